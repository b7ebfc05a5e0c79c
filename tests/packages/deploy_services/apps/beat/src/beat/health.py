import pathlib
import sys
import time

from beat import HEARTBEAT

if __name__ == "__main__":
    try:
        age = time.time() - float(pathlib.Path(HEARTBEAT).read_text())
    except (OSError, ValueError):
        sys.exit("beat: no heartbeat yet")
    sys.exit(0 if age < 10 else f"beat: last heartbeat {age:.0f} s ago")
