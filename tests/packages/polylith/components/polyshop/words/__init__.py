"""A Polylith component shared by both projects."""


def greeting(name: str) -> str:
    return f"hello, {name}"
