"""Built by poetry-core from [tool.poetry]."""

BACKEND = "poetry-core"
