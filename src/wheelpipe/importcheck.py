"""Import what a service ships: every module of its first-party distributions, every entry point
they declare, and what the command the image runs names (its console script's entry point, the
module of `python -m`, the module:object a server is told to serve): loaded, never called.

An install can be exactly what the locks pin and still not run: a dependency that removed a
name its dependant imports (werkzeug 3 and Flask 2.2's `url_quote`, imported by a module
deep in the package, not by its top level), or a module importing a package nobody declared.
Only importing finds that. This file runs as a script under the interpreter of the
environment it checks (the image build's venv, or the throwaway venv of the offline install
check), so it uses the standard library alone and nothing of wheelpipe.

    python -I -B importcheck.py [--marker TEXT] [--requirements FILE] [--distribution NAME]...
                                [--entry-point SCRIPT]... [--entry-points-of NAME]...
                                [--command WORDS]... [--reference MODULE:OBJECT]...

Exit 0 after one summary line; exit 1 after one line, starting with the marker, naming the
first module or entry point that failed and its exception (and how many others failed).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import importlib.util
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence

# `name==version` at the start of a line of a hashed requirements file (an install manifest).
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def pinned_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as lines:
        return [match.group(1) for match in map(_PIN.match, lines) if match]


def modules(distribution: importlib.metadata.Distribution) -> list[str]:
    """Every module the distribution installs, from its RECORD: each .py file and extension
    module under an importable path, packages before their modules. A `__main__` module is
    left out: importing it runs the program."""
    found = set()
    for path in distribution.files or ():
        parts = list(path.parts)
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data")) or "__pycache__" in parts:
            continue
        name = parts[-1]
        if name.endswith(".py"):
            parts[-1] = name[: -len(".py")]
        elif name.endswith((".so", ".pyd")):
            parts[-1] = name.split(".", 1)[0]
        else:
            continue  # data, a .pth file, a stub
        if parts[-1] == "__init__":
            parts.pop()
        if parts and parts[-1] != "__main__" and all(part.isidentifier() for part in parts):
            found.add(".".join(parts))
    return sorted(found, key=lambda module: (module.count("."), module))


def _reason(error: BaseException) -> str:
    """The exception's last line, as a traceback ends: `ModuleNotFoundError: No module named 'x'`."""
    return traceback.format_exception_only(type(error), error)[-1].strip()


def _attempt(failures: list[tuple[str, str]], name: str, what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a SystemExit at import is a failure too
        failures.append((name, f"{what} failed: {_reason(error)}"))


def _runnable(module: str) -> None:
    """What `python -m module` runs can be found: the module, or a package's __main__ (found,
    not run: that would start the program)."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {module!r}")
    if spec.submodule_search_locations is not None and importlib.util.find_spec(f"{module}.__main__") is None:
        raise ModuleNotFoundError(f"No module named '{module}.__main__'; {module!r} is a package and cannot be directly executed")


def _reference(text: str) -> None:
    """module:object, as uvicorn and gunicorn take it: the module imports and has the object
    (a factory, `create_app()`, is found, not called)."""
    module, _, attributes = text.partition(":")
    target = importlib.import_module(module)
    for attribute in attributes.removesuffix("()").split("."):
        target = getattr(target, attribute)


def check(distributions: list[str], entry_points: list[str], references: Sequence[str] = (), runnable: Sequence[str] = ()) -> tuple[str, list[tuple[str, str]]]:  # noqa: C901 - a script the image runs with the standard library alone: each kind of target (module, entry point, reference, python -m) is one plain loop
    """(summary, failures as (module or script, why)): import every module of the
    distributions and load every entry point they declare, then load each named console
    script's entry point, import each module:object reference and find each `-m` module."""
    failures: list[tuple[str, str]] = []
    imported = loaded = 0
    own_entry_points = []
    for name in distributions:
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            failures.append((name, f"{name} is not installed"))
            continue
        label = f"{distribution.metadata['Name']} {distribution.version}"
        for module in modules(distribution):
            if any(module.startswith(f"{failed}.") for failed, _ in failures):
                continue  # its package failed to import, reported: the same fault
            imported += 1
            _attempt(failures, module, f"importing {module} (from {label})", functools.partial(importlib.import_module, module))
        own_entry_points += [(entry, label) for entry in distribution.entry_points]
    scripts = importlib.metadata.entry_points(group="console_scripts")  # Python 3.10 and later
    for script in entry_points:
        found = [entry for entry in scripts if entry.name == script]
        if not found:
            failures.append((script, f"no installed distribution declares the console script {script}"))
            continue
        own_entry_points.append((found[0], f"the console script {script}"))
    seen = set()
    for entry, owner in own_entry_points:
        if (entry.group, entry.name, entry.value) in seen:
            continue
        seen.add((entry.group, entry.name, entry.value))
        if entry.module in {name for name, _ in failures} or entry.module.partition(".")[0] in {name for name, _ in failures}:
            continue  # its module failed to import, reported above: the same fault
        loaded += 1
        _attempt(failures, entry.name, f"loading the entry point {entry.name} ({entry.value}, {entry.group} of {owner})", entry.load)
    for text in references:
        _attempt(failures, text, f"importing {text}, which the service's command serves", functools.partial(_reference, text))
    for module in runnable:
        _attempt(failures, module, f"finding {module}, which the service's command runs with python -m", functools.partial(_runnable, module))
    summary = f"imported {imported} modules of {', '.join(distributions) or 'no distribution'}; loaded {loaded} entry points"
    if references or runnable:
        summary += f"; found {', '.join([*references, *runnable])}"
    return summary, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="importcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--marker", default="", help="text that starts the failure line")
    parser.add_argument("--requirements", action="append", default=[], help="a hashed requirements file: check every distribution it pins")
    parser.add_argument("--distribution", action="append", default=[], help="a distribution to check")
    parser.add_argument("--entry-point", action="append", default=[], help="a console script whose entry point must load")
    parser.add_argument("--entry-points-of", action="append", default=[], help="a distribution whose every console script's entry point must load")
    parser.add_argument("--command", action="append", default=[], help="a command the image runs (its words, shell-quoted): its console script or python -m module")
    parser.add_argument("--reference", action="append", default=[], help="a module:object the command serves")
    parser.add_argument("--references", action="append", default=[], help="several --reference, separated by spaces")
    args = parser.parse_args(argv)
    distributions = [name for path in args.requirements for name in pinned_names(path)] + args.distribution
    scripts = list(args.entry_point)
    runnable = []
    for command in args.command:
        words = shlex.split(command)
        if words and words[0] in ("python", "python3"):
            runnable += words[2:3] if words[1:2] == ["-m"] else []
        elif words:
            scripts.append(words[0])
    for name in args.entry_points_of:
        try:
            scripts += [entry.name for entry in importlib.metadata.distribution(name).entry_points if entry.group == "console_scripts"]
        except importlib.metadata.PackageNotFoundError:
            distributions.append(name)  # reported as not installed
    # A worker's health command is often its own command: load each entry point once.
    references = [*args.reference, *(word for words in args.references for word in words.split())]
    summary, failures = check(list(dict.fromkeys(distributions)), list(dict.fromkeys(scripts)), list(dict.fromkeys(references)), runnable)
    if failures:
        # The first failure in full; of the others (often its consequences), their names.
        more = f" (also failing: {', '.join(name for name, _ in failures[1:])})" if len(failures) > 1 else ""
        print(f"{args.marker}{failures[0][1]}{more}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
