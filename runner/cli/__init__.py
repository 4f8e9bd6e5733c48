"""The command line: `airlock`, one module per command group.

app        the Typer app, the global -v, the commands registered; main, the error boundary
options    the options the commands share, their defaults, the policy and trust builders
output     consoles, files written, a report shown and the exit code it earns
models     run, scan, preflight, describe
batch      eval
behaviour  diff, baseline record/check/list
reports    report show/html/sarif
signing    sign, verify
admin      image build/status, gc, doctor, version
progress   eval's progress on stderr
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The `airlock` command (runner.cli.app.main): run it on argv, return the exit code."""
    from runner.cli.app import main as run

    return run(argv)
