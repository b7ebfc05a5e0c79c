from wheelpipe.tasks import ns  # noqa: F401
