"""The README states facts the code also states: they must not drift apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _cli_commands() -> set[tuple[str, ...]]:
    found = set()
    for m in re.finditer(r"\bairlock ((?:image |report )?[a-z]+)\b", README):
        found.add(tuple(m.group(1).split()))
    return found


def test_every_airlock_command_in_the_readme_exists() -> None:
    commands = _cli_commands()
    assert {("run",), ("scan",), ("eval",), ("image", "build"), ("report", "html")} <= commands
    for cmd in sorted(commands):
        proc = subprocess.run(
            [sys.executable, "-m", "runner.cli", *cmd, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"README mentions 'airlock {' '.join(cmd)}': {proc.stderr}"


def test_every_make_target_in_the_readme_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    for target in set(re.findall(r"\bmake ([a-z][a-z-]*)", README)):
        assert target in targets, f"README mentions 'make {target}'"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "make demo" in README


def test_exit_codes_match_the_readme() -> None:
    from runner import errors

    for code in (
        errors.EXIT_OK,
        errors.EXIT_FINDINGS,
        errors.EXIT_USAGE,
        errors.EXIT_ERROR,
        errors.EXIT_INTERNAL,
    ):
        assert f"| {code} |" in README
