"""The `airlock` command line: the Typer app, its global option, the commands (each defined in
the module of its group), and `main`, the one place errors are printed.

Results go to stdout; logs, progress and errors to stderr. Exit codes (runner/errors.py): 0
success, 1 findings, 2 usage error, 3 could not evaluate (engine, image, sandbox failure), 4
internal error (a bug in Airlock), 130 interrupted. An error is printed once, as one line;
`--verbose` adds the traceback and the package's debug log.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from runner.cli import admin, batch, behaviour, models, reports, serve, signing
from runner.cli.output import ErrorAfterReport, err
from runner.errors import EXIT_INTERNAL, EXIT_OK, AirlockError, untrusted_text

EXIT_INTERRUPTED = 130  # what typer makes of Ctrl-C (and main of SIGTERM)

app = typer.Typer(
    name="airlock",
    no_args_is_help=True,
    add_completion=False,
    help="Load untrusted models in a sealed container and see what they do.",
    pretty_exceptions_enable=False,
)
image_app = typer.Typer(no_args_is_help=True, help="Build and check the sandbox image.")
report_app = typer.Typer(no_args_is_help=True, help="Views of a JSON report.")
baseline_app = typer.Typer(
    no_args_is_help=True, help="Record behavioural baselines and check models against them."
)

log = logging.getLogger("runner")  # the package's logger; configured by main only


@dataclass
class _State:
    verbose: bool = False
    handler: logging.Handler | None = None  # main's stderr handler, while main runs


_state = _State()


def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show tracebacks")] = False,
) -> None:
    _state.verbose = verbose
    if _state.handler is not None:  # under main: -v shows the package's debug log
        log.setLevel(logging.DEBUG if verbose else logging.WARNING)


app.callback()(_global_options)

app.command("run")(models.run)
app.command("scan")(models.scan)
app.command("preflight")(models.preflight)
app.command("describe")(models.describe)
app.command("diff")(behaviour.diff_)
app.command("eval")(batch.eval_)
app.command("serve")(serve.serve)
app.command("sign")(signing.sign_cmd)
app.command("verify")(signing.verify_cmd)
app.command("gc")(admin.gc)
app.command("doctor")(admin.doctor)
app.command("version")(admin.version)
image_app.command("build")(admin.image_build)
image_app.command("status")(admin.image_status)
report_app.command("show")(reports.report_show)
report_app.command("html")(reports.report_html)
report_app.command("sarif")(reports.report_sarif)
baseline_app.command("record")(behaviour.baseline_record)
baseline_app.command("check")(behaviour.baseline_check)
baseline_app.command("list")(behaviour.baseline_list)
app.add_typer(image_app, name="image")
app.add_typer(report_app, name="report")
app.add_typer(baseline_app, name="baseline")


# --- the boundary ---------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Lines(logging.Formatter):
    """Warnings with their level and logger; progress lines (extra={"progress": True}) as
    plain lines, as the user reads them."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "progress", False):
            return f"airlock: {record.getMessage()}"
        return super().format(record)


def _start_logging() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines("airlock: %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    _state.handler = handler
    return handler


def _stop_logging(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    log.setLevel(logging.NOTSET)
    _state.handler = None


def _invoke(argv: list[str] | None) -> int:
    """Run the command; its exit code. Typer prints usage errors itself (click's message, exit
    2) and turns Ctrl-C into exit 130; every exit comes out of it as SystemExit. Airlock's
    errors and any other exception propagate to main."""
    try:
        app(args=argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_OK if e.code is None else 1
    return EXIT_OK


def _fail(line: str, error: BaseException) -> None:
    """Print an error: its traceback with -v, then its one line."""
    if _state.verbose and error.__traceback__ is not None:
        traceback.print_exception(error)
    err.print(line, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """The `airlock` command on argv (default: sys.argv[1:]); returns the exit code, which the
    console script exits with. Every error is printed here, once:

    - a usage error from the command line's parser: click's message, exit 2 (printed by typer);
    - an AirlockError: `airlock: error: <diagnostics>`, its exit code (a command that showed a
      report first raises ErrorAfterReport, carrying the error and the code it earned);
    - Ctrl-C or SIGTERM: the sandbox is torn down on the way out, exit 130;
    - anything else is a bug: `airlock: internal error: <type>: <message>`, exit 4.
    """
    _state.verbose = False
    handler = _start_logging()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _invoke(argv)
    except ErrorAfterReport as e:
        _fail(f"airlock: error: {e.error.diagnostics()}", e.error)
        code = e.exit_code
    except AirlockError as e:
        _fail(f"airlock: error: {e.diagnostics()}", e)
        code = e.exit_code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as e:
        what = f"{type(e).__name__}: {untrusted_text(str(e))}" if str(e) else type(e).__name__
        hint = "" if _state.verbose else " (run with -v for the traceback)"
        _fail(f"airlock: internal error: {what}{hint}", e)
        code = EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_logging(handler)
    if code == EXIT_INTERRUPTED:
        err.print("airlock: interrupted; the sandbox was removed", markup=False)
    return code


if __name__ == "__main__":  # python -m runner.cli.app, as before runner.cli had a __main__
    sys.exit(main())
