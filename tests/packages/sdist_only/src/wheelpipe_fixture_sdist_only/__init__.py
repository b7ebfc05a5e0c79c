ORIGIN = "built into a wheel by build-wheels from its sdist"
