"""The strict reader and writer of hashed requirement files (service locks, install manifests)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from monorepo import FIXTURE

from wheelpipe.errors import LockError
from wheelpipe.lockfile import format_pins, parse_pins

HASH_A = "a" * 64
HASH_B = "b" * 64
LABEL = "requirements/x.txt"


def write_lock(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.txt"
    path.write_text(text)
    return path


def test_parses_the_committed_order_lock() -> None:
    pins = parse_pins(FIXTURE / "requirements" / "order.txt")
    assert "flask" in pins
    assert {"gunicorn", "werkzeug"} <= set(pins)
    for name, pin in pins.items():
        assert pin.name == name
        assert re.fullmatch(r"[0-9][0-9a-z.+!-]*", pin.version), pin
        assert pin.requirement_line() == f"{name}=={pin.version}"
        assert pin.hashes
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in pin.hashes)


def test_parses_continuations_comments_and_several_hashes(tmp_path: Path) -> None:
    path = write_lock(
        tmp_path,
        "#\n# header\n#\n"
        f"Flask==3.1.3 \\\n    --hash=sha256:{HASH_A} \\\n    --hash=sha256:{HASH_B}\n    # via -r requirements/x.in\n"
        f"zope.interface==7.0  --hash=sha256:{HASH_A}  # trailing comment\n",
    )
    pins = parse_pins(path, LABEL)
    assert list(pins) == ["flask", "zope-interface"]
    assert pins["flask"].version == "3.1.3"
    assert pins["flask"].hashes == {HASH_A, HASH_B}
    assert pins["flask"].line == 4
    assert pins["zope-interface"].line == 8


def test_accepts_an_environment_marker_as_pip_compile_writes_it(tmp_path: Path) -> None:
    # pip-compile keeps the marker of a requirement declared with one in the .in file.
    path = write_lock(tmp_path, f'six==1.17.0 ; python_version >= "3.8" \\\n    --hash=sha256:{HASH_A}\n')
    pins = parse_pins(path, LABEL)
    assert pins["six"].requirement_line() == "six==1.17.0"
    assert pins["six"].hashes == {HASH_A}


@pytest.mark.parametrize(
    ("text", "line", "found"),
    [
        (f"flask>=3 --hash=sha256:{HASH_A}\n", 1, "found the unpinned 'flask>=3'"),
        (f"flask==3.* --hash=sha256:{HASH_A}\n", 1, "found the unpinned 'flask==3.*'"),
        (f"flask --hash=sha256:{HASH_A}\n", 1, "found the unpinned 'flask'"),
        (f"flask>=3,<4 --hash=sha256:{HASH_A}\n", 1, "found the unpinned 'flask>=3,<4'"),
        (f"# comment\n\nclick==8.1.7 \\\n    --hash=sha256:{HASH_A}\nflask==3.1.3\n", 5, "found flask==3.1.3 without a hash"),
        ("--index-url https://pypi.org/simple\n", 1, "found the option '--index-url'"),
        ("-e ./services/order\n", 1, "found the option '-e'"),
        (f"flask==3.1.3 --hash=sha256:{HASH_A[:-1]}\n", 1, f"found '--hash=sha256:{HASH_A[:-1]}' after flask==3.1.3"),
        (f"flask==3.1.3 --hash=md5:{'0' * 32}\n", 1, f"found '--hash=md5:{'0' * 32}' after flask==3.1.3"),
        (f"flask==3.1.3 --hash=sha256:{HASH_A.upper()}\n", 1, "found '--hash=sha256:AAAA"),
        (f"flask==3.1.3 --hash=sha256:{HASH_A} --index-url https://x\n", 1, "found '--index-url' after flask==3.1.3"),
        (f"flask @ https://example.invalid/flask-3.1.3.whl --hash=sha256:{HASH_A}\n", 1, "found the unpinned"),
        ("flask=3.1.3\n", 1, "found 'flask=3.1.3'"),
    ],
    ids=[
        "range",
        "wildcard",
        "bare-name",
        "two-specifiers",
        "no-hash",
        "index-url",
        "editable",
        "short-hash",
        "md5-hash",
        "uppercase-hash",
        "option-after-pin",
        "url",
        "malformed",
    ],
)
def test_error_names_file_and_line_and_what_was_expected(tmp_path: Path, text: str, line: int, found: str) -> None:
    path = write_lock(tmp_path, text)
    expected = re.escape(f"{LABEL}:{line}: expected `name==version --hash=sha256:<64 hex>`, ") + ".*" + re.escape(found)
    with pytest.raises(LockError, match=f"^{expected}") as error:
        parse_pins(path, LABEL)
    assert "\n" not in str(error.value)


def test_duplicate_pin_names_both_lines(tmp_path: Path) -> None:
    path = write_lock(
        tmp_path,
        f"flask==3.1.3 \\\n    --hash=sha256:{HASH_A}\nclick==8.1.7 --hash=sha256:{HASH_B}\nFlask==3.1.2 --hash=sha256:{HASH_B}\n",
    )
    with pytest.raises(LockError, match=rf"^{re.escape(LABEL)}:4: flask is pinned twice \(first on line 1\)"):
        parse_pins(path, LABEL)


def test_label_defaults_to_the_path(tmp_path: Path) -> None:
    path = write_lock(tmp_path, "flask>=3\n")
    with pytest.raises(LockError, match=rf"^{re.escape(str(path))}:1: "):
        parse_pins(path)


def test_empty_file_has_no_pins(tmp_path: Path) -> None:
    assert parse_pins(write_lock(tmp_path, "# nothing locked\n"), LABEL) == {}


def test_format_pins_round_trips_through_parse_pins(tmp_path: Path) -> None:
    entries = [("werkzeug", "3.1.3", HASH_B), ("flask", "3.1.3", HASH_A), ("click", "8.1.7", "c" * 64)]
    text = format_pins(entries, "Generated by tests.\n\nInstall with pip --require-hashes.")
    assert text.startswith("# Generated by tests.\n#\n# Install with pip --require-hashes.\n")
    pins = parse_pins(write_lock(tmp_path, text), LABEL)
    assert list(pins) == ["click", "flask", "werkzeug"]  # sorted by name
    assert {(p.name, p.version, *p.hashes) for p in pins.values()} == set(entries)


def test_format_pins_round_trips_the_committed_lock(tmp_path: Path) -> None:
    committed = parse_pins(FIXTURE / "requirements" / "order.txt")
    entries = [(p.name, p.version, digest) for p in committed.values() for digest in sorted(p.hashes)[:1]]
    again = parse_pins(write_lock(tmp_path, format_pins(entries, "round trip")), LABEL)
    assert {n: p.version for n, p in again.items()} == {n: p.version for n, p in committed.items()}
