"""What the last round recorded, for the health check: a small JSON file, replaced whole."""

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATE_ENV = "DISCOUNT_AUDIT_STATE"
# /tmp is the one writable place in the image (a tmpfs over a read-only root).
DEFAULT_STATE = "/tmp/discount-audit.json"


def state_path() -> Path:
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE)


@dataclass(frozen=True)
class Recorded:
    round: int
    passed: bool
    time: float  # when the round ended, seconds since the epoch
    interval: float  # the worker's interval: how old a record may be


def record(path: Path, recorded: Recorded) -> None:
    """Replace the record in one rename: the health check never reads half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as stream:
            json.dump(recorded.__dict__, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def healthy(path: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why): the last round passed and ended within three intervals (and 10 s)."""
    try:
        recorded = Recorded(**json.loads(path.read_text()))
    except FileNotFoundError:
        return False, f"{path}: no round recorded yet"
    except (OSError, ValueError, TypeError) as error:
        return False, f"{path}: unreadable ({error})"
    age = (time.time() if now is None else now) - recorded.time
    if age > 3 * recorded.interval + 10:
        return False, f"round {recorded.round} ended {age:.0f} s ago; the worker is stuck or gone"
    if not recorded.passed:
        return False, f"round {recorded.round} FAILED"
    return True, f"round {recorded.round} passed {age:.0f} s ago"
