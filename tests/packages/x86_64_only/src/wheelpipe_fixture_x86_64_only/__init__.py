"""Nothing but a name: the fixture is about where its wheel runs."""
