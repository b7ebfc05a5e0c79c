"""The docker client seam on its own: what it does with the client's output streams.

These run a stand-in client (a script), because what they pin down is a race with a real one
that a loaded machine only sometimes loses (seen once as `docker cp` exiting by SIGPIPE).
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

from wheelpipe.docker import Docker

# A client whose `cp` writes a tar of venv/pyvenv.cfg up to its end, waits, then writes one
# more zero block: a client still writing when the reader has seen the end.
STAND_IN = r'''#!{python}
import io, sys, tarfile, time
command = sys.argv[1]
if command == "create":
    print("c0ffee")
elif command == "cp":
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        data = b"home = /usr/bin\n"
        info = tarfile.TarInfo("venv/pyvenv.cfg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    body = buffer.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    # Up to a whole tar record (what a reader asks for at once), the end of archive included;
    # then, later, one more zero block.
    sys.stdout.buffer.write(body + b"\0" * (10240 - len(body)))
    sys.stdout.buffer.flush()
    time.sleep(0.5)
    sys.stdout.buffer.write(b"\0" * 512)
    sys.stdout.buffer.flush()
'''


def test_reading_a_tree_waits_for_the_client_to_finish_writing(tmp_path: Path) -> None:
    client = tmp_path / "docker"
    client.write_text(STAND_IN.format(python=sys.executable))
    client.chmod(0o755)
    tree = Docker(command=str(client)).read_tree("image", "/srv/venv", lambda path: True)
    assert tree.files == {PurePosixPath("pyvenv.cfg"): b"home = /usr/bin\n"}
