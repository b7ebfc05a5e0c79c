"""Building wheels: the layer below the workspace loader and above the model's types.

- runner.py: where a build backend runs, this host or the target's builder container;
- environment.py: a build lock installed hash-checked and offline, and the one way a backend builds a wheel in it;
- metadata.py: the first-party packages' backends, and the metadata only a backend can give;
- sdists.py: a locked sdist built into a reproducible wheel with its own build lock;
- firstparty.py: our wheels, built reproducibly from a staged copy of the files git sees (or of a commit);
- compiled.py: compiled wheels checked against the target's manylinux policy and tagged for it.
"""
