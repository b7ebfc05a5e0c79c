"""Command line entry point: ``discount-audit [run|healthcheck]``."""

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from discount_audit.audit import audit_round
from discount_audit.state import Recorded, healthy, record, state_path

PROG = "discount-audit"
INTERVAL_ENV = "DISCOUNT_AUDIT_INTERVAL"
SAMPLE_ENV = "DISCOUNT_AUDIT_SAMPLE"
DEFAULT_INTERVAL = 5.0
DEFAULT_SAMPLE = 1000


def _number(name: str, default: float, minimum: float, maximum: float, kind: type) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        print(f"{PROG}: error: {name} must be a {kind.__name__} from {minimum} to {maximum}, got {raw!r}", file=sys.stderr)
        raise SystemExit(2)
    return value


def run(stop: threading.Event, interval: float, sample: int) -> int:
    """Audit a round, record it, wait `interval` seconds; until `stop` is set. One line per round."""
    path = state_path()
    rounds = 0
    print(f"{PROG}: auditing {sample} discounts every {interval:g} s; recording to {path}", flush=True)
    while not stop.is_set():
        rounds += 1
        audit = audit_round(sample)
        record(path, Recorded(rounds, audit.passed, time.time(), interval))
        print(f"{PROG}: round {rounds}: {audit.summary()}", flush=True)
        stop.wait(interval)
    print(f"{PROG}: stopping after {rounds} rounds", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Audit the discount table round after round, or check the last round.")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "healthcheck"],
                        help="run (default) until SIGTERM, or healthcheck: exit 0 if the last round passed recently")
    args = parser.parse_args(argv)
    if args.command == "healthcheck":
        ok, why = healthy(state_path())
        print(f"{PROG}: healthcheck: {why}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    interval = _number(INTERVAL_ENV, DEFAULT_INTERVAL, 0.1, 3600.0, float)
    sample = int(_number(SAMPLE_ENV, DEFAULT_SAMPLE, 1, 1_000_000, int))
    stop = threading.Event()
    # SIGTERM (docker stop) and Ctrl-C end the wait between rounds: the worker stops at once,
    # between rounds, and exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return run(stop, interval, sample)
