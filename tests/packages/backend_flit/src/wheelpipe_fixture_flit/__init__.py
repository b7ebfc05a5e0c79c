"""Built by flit_core from a static [project]."""

BACKEND = "flit_core"
