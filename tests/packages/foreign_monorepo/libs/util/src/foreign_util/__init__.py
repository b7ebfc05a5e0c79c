"""The fixture's shared package, with one third-party dependency."""

import six


def banner(name: str) -> str:
    return f"{six.ensure_str(name)} on six {six.__version__}"
