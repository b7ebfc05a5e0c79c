"""Labels for the services' output."""

import six


def label(service: str) -> str:
    return f"{service} on six {six.__version__}"
