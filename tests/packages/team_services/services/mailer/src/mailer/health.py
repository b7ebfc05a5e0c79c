import pathlib
import sys
import time

from mailer import HEARTBEAT

if __name__ == "__main__":
    try:
        age = time.time() - float(pathlib.Path(HEARTBEAT).read_text())
    except (OSError, ValueError):
        sys.exit("mailer: no heartbeat yet")
    sys.exit(0 if age < 10 else f"mailer: last heartbeat {age:.0f} s ago")
