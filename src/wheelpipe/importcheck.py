"""Import what a service ships: every top-level module of its first-party distributions, and
the entry points of the console scripts it runs (loaded, never called).

An install can be exactly what the locks pin and still not run: a dependency that removed a
name its dependant imports (werkzeug 3 and Flask 2.2's `url_quote`), or a module importing a
package nobody declared. Only importing finds that. This file runs as a script under the
interpreter of the environment it checks (the image build's venv, or the throwaway venv of
the offline install check), so it uses the standard library alone and nothing of wheelpipe.

    python -I -B importcheck.py [--marker TEXT] [--requirements FILE] [--distribution NAME]...
                                [--entry-point SCRIPT]... [--entry-points-of NAME]...

Exit 0 after one summary line; exit 1 after one line, starting with the marker, naming the
first module or entry point that failed and its exception (and how many others failed).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
import traceback

# `name==version` at the start of a line of a hashed requirements file (an install manifest).
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def pinned_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as lines:
        return [match.group(1) for match in map(_PIN.match, lines) if match]


def top_level_modules(distribution: importlib.metadata.Distribution) -> list[str]:
    """What `import` can name of the distribution: its top_level.txt (setuptools writes one),
    else the first component of every module path its RECORD lists."""
    listed = distribution.read_text("top_level.txt")
    if listed:
        return sorted({line.strip() for line in listed.splitlines() if line.strip()})
    found = set()
    for path in distribution.files or ():
        parts = path.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data")) or parts[0] == "__pycache__":
            continue
        if len(parts) > 1:
            name = parts[0]
        elif parts[0].endswith(".py"):
            name = parts[0][: -len(".py")]
        elif parts[0].endswith((".so", ".pyd")):
            name = parts[0].split(".", 1)[0]
        else:
            continue  # a .pth file or other data at the top of site-packages
        if name.isidentifier():
            found.add(name)
    return sorted(found)


def _reason(error: BaseException) -> str:
    """The exception's last line, as a traceback ends: `ModuleNotFoundError: No module named 'x'`."""
    return traceback.format_exception_only(type(error), error)[-1].strip()


def check(distributions: list[str], entry_points: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """(summary, failures as (module or script, why)): import every top-level module of the distributions, then load
    each named console script's entry point."""
    failures = []
    modules = 0
    for name in distributions:
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            failures.append((name, f"{name} is not installed"))
            continue
        label = f"{distribution.metadata['Name']} {distribution.version}"
        for module in top_level_modules(distribution):
            modules += 1
            try:
                importlib.import_module(module)
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001 - a SystemExit at import is a failure too
                failures.append((module, f"importing {module} (from {label}) failed: {_reason(error)}"))
    scripts = importlib.metadata.entry_points(group="console_scripts")  # Python 3.10 and later
    for script in entry_points:
        found = [entry for entry in scripts if entry.name == script]
        if not found:
            failures.append((script, f"no installed distribution declares the console script {script}"))
            continue
        if found[0].module.partition(".")[0] in {name for name, _ in failures}:
            continue  # its module failed to import, reported above: the same fault
        try:
            found[0].load()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001
            failures.append((script, f"loading the console script {script} ({found[0].value}) failed: {_reason(error)}"))
    loaded = f"; loaded the entry point of {', '.join(entry_points)}" if entry_points else ""
    summary = f"imported {modules} top-level modules of {', '.join(distributions) or 'no distribution'}{loaded}"
    return summary, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="importcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--marker", default="", help="text that starts the failure line")
    parser.add_argument("--requirements", action="append", default=[], help="a hashed requirements file: check every distribution it pins")
    parser.add_argument("--distribution", action="append", default=[], help="a distribution to check")
    parser.add_argument("--entry-point", action="append", default=[], help="a console script whose entry point must load")
    parser.add_argument("--entry-points-of", action="append", default=[], help="a distribution whose every console script's entry point must load")
    args = parser.parse_args(argv)
    distributions = [name for path in args.requirements for name in pinned_names(path)] + args.distribution
    scripts = list(args.entry_point)
    for name in args.entry_points_of:
        try:
            scripts += [entry.name for entry in importlib.metadata.distribution(name).entry_points if entry.group == "console_scripts"]
        except importlib.metadata.PackageNotFoundError:
            distributions.append(name)  # reported as not installed
    # A worker's health command is often its own command: load each entry point once.
    summary, failures = check(list(dict.fromkeys(distributions)), list(dict.fromkeys(scripts)))
    if failures:
        # The first failure in full; of the others (often its consequences), their names.
        more = f" (also failing: {', '.join(name for name, _ in failures[1:])})" if len(failures) > 1 else ""
        print(f"{args.marker}{failures[0][1]}{more}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
