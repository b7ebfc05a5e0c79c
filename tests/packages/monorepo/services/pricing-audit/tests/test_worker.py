import json
import os
import signal
import subprocess
import sys
import time
import pytest

from discount_audit.state import Recorded, healthy, record
from discount_audit.worker import main

@pytest.fixture
def state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    monkeypatch.setenv("DISCOUNT_AUDIT_STATE", str(path))
    return path


def test_the_worker_logs_a_line_per_round_and_stops_with_status_0_on_sigterm(state):
    # Its own process, as in the image: SIGTERM is what `docker stop` sends. It imports what
    # these tests import (the built wheel, or the sources), from the same path.
    env = {**os.environ, "DISCOUNT_AUDIT_INTERVAL": "0.2", "DISCOUNT_AUDIT_SAMPLE": "50", "DISCOUNT_AUDIT_STATE": str(state),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen([sys.executable, "-c", "import sys; from discount_audit.worker import main; sys.exit(main())"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (state.exists() and json.loads(state.read_text())["round"] >= 3):
            assert worker.poll() is None and time.monotonic() < deadline, worker.stdout.read()
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=5)
    finally:
        worker.kill()
    assert worker.returncode == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("discount-audit: auditing 50 discounts every 0.2 s")
    rounds = [line for line in lines if line.startswith("discount-audit: round ")]
    assert len(rounds) >= 3 and all(": ok: 50 discounts" in line for line in rounds)
    assert lines[-1] == f"discount-audit: stopping after {len(rounds)} rounds"


def test_healthcheck_passes_after_a_recent_passing_round_only(state, capsys):
    assert main(["healthcheck"]) == 1
    assert "no round recorded yet" in capsys.readouterr().err

    record(state, Recorded(round=4, passed=True, time=time.time(), interval=5))
    assert main(["healthcheck"]) == 0

    record(state, Recorded(round=5, passed=False, time=time.time(), interval=5))
    assert main(["healthcheck"]) == 1
    assert "round 5 FAILED" in capsys.readouterr().err


def test_a_stale_or_damaged_record_is_unhealthy(state):
    record(state, Recorded(round=2, passed=True, time=1000.0, interval=5))
    assert healthy(state, now=1000.0 + 24) == (True, "round 2 passed 24 s ago")
    assert healthy(state, now=1000.0 + 26)[0] is False
    state.write_text("{not json")
    assert healthy(state)[0] is False


@pytest.mark.parametrize(("name", "value"), [("DISCOUNT_AUDIT_INTERVAL", "0"), ("DISCOUNT_AUDIT_SAMPLE", "many")])
def test_a_bad_setting_is_a_usage_error_before_any_round(state, monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    assert f"discount-audit: error: {name} must be" in capsys.readouterr().err
    assert not state.exists()
