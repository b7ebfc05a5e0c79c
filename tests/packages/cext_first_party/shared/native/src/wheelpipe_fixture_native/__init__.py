"""A checksum computed in C, wrapped in Python: the compiled part must come from the wheel."""

from ._speedups import adler32, compiled_for

__all__ = ["adler32", "checksum_text", "compiled_for"]


def checksum_text(text: str) -> str:
    """The Adler-32 checksum of the text's UTF-8 bytes, as eight hex digits."""
    return f"{adler32(text.encode()):08x}"
