from money.format import cents


__all__ = ["cents"]
