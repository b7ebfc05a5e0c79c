"""`invoke lint`: ruff and mypy over the pipeline's code and its tests, as the root pyproject.toml configures them."""

from __future__ import annotations

import shutil
from pathlib import Path

from monorepo import ROOT, invoke


def test_lint_lists_what_each_linter_found_and_fails_changing_nothing(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "tasks.py"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    # The tests, which [tool.mypy] checks too; not their fixtures (other teams' code, as written).
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__", "packages"))
    if (ROOT / ".mypy_cache").is_dir():
        # mypy's incremental cache, as `invoke lint` left it here (CI lints before the tests):
        # a module whose bytes differ is checked anew, so the findings are a cold run's, in a
        # second instead of half a minute spent on the standard library and the dependencies.
        shutil.copytree(ROOT / ".mypy_cache", tmp_path / ".mypy_cache")
    sbom, fsutil = tmp_path / "src/wheelpipe/sbom.py", tmp_path / "src/wheelpipe/fsutil.py"
    sbom.write_text(sbom.read_text() + "import os\n")
    # A second way to run a program, around the one seam (tools.py): refused by name.
    compose = tmp_path / "src/wheelpipe/compose.py"
    compose.write_text(compose.read_text() + "\n\ndef up_directly() -> None:\n    import subprocess\n\n    subprocess.run(['docker', 'compose', 'up'], check=True)\n")
    fsutil.write_text(fsutil.read_text() + '\n\ndef size() -> int:\n    return "large"\n')
    lines = len(sbom.read_text().splitlines())
    # A test helper without types is a finding; the same in a fixture package is not linted.
    helpers = tmp_path / "tests/monorepo.py"
    helpers.write_text(helpers.read_text() + "\n\ndef planted(value):\n    return value\n")
    planted = len(helpers.read_text().splitlines()) - 1
    fixture = tmp_path / "tests/packages/theirs/src/theirs/__init__.py"
    fixture.parent.mkdir(parents=True)
    fixture.write_text("def untyped(value):\n    return value\n")
    before = {path: path.read_bytes() for path in (sbom, fsutil, helpers, fixture)}

    result = invoke(tmp_path, "lint", check=False)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: ruff check and mypy found problems (listed above)"
    assert f"src/wheelpipe/sbom.py:{lines}:8: F401 [*] `os` imported but unused" in result.stdout
    assert "src/wheelpipe/compose.py:" in result.stdout and "TID251 `subprocess` is banned: run programs through wheelpipe.tools" in result.stdout
    assert 'src/wheelpipe/fsutil.py:' in result.stdout and 'Incompatible return value type (got "str", expected "int")' in result.stdout
    assert f"tests/monorepo.py:{planted}: error: Function is missing a type annotation  [no-untyped-def]" in result.stdout
    assert "tests/packages" not in result.stdout
    assert {path: path.read_bytes() for path in (sbom, fsutil, helpers, fixture)} == before  # a check, never a fix
