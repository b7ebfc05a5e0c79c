"""User names as tokens hold them: trimmed, lower case, escaped."""

from markupsafe import escape


def normalized(user: str) -> str:
    return str(escape(user.strip().lower()))
