"""The reporter worker."""
