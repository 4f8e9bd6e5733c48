"""The command line's one error boundary, runner.cli.main: what it prints and the exit code."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import EXIT_INTERNAL, UsageError

INTERNAL = (
    "airlock: internal error: RuntimeError: disk on fire | twice (run with -v for the traceback)"
)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture
def broken_report_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """`airlock report show` fails with a bug, not an Airlock error."""

    def read(path: Path) -> None:
        raise RuntimeError("disk on fire\ntwice")

    monkeypatch.setattr("runner.cli.reports._read_report", read)


@pytest.mark.usefixtures("broken_report_reader")
def test_an_unexpected_exception_is_one_line_and_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "show", "r.json"]) == EXIT_INTERNAL == 4
    printed = capsys.readouterr()
    assert _lines(printed.err) == [INTERNAL]
    assert printed.out == ""


@pytest.mark.usefixtures("broken_report_reader")
def test_verbose_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "report", "show", "r.json"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "RuntimeError: disk on fire" in err and "in read" in err
    assert _lines(err)[-1] == "airlock: internal error: RuntimeError: disk on fire | twice"


def test_usage_errors_exit_2_with_the_parsers_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--bogus"]) == 2
    assert "No such option: --bogus" in capsys.readouterr().err
    assert main(["run", "m.onnx", "--memory", "lots", "--input", "x.npy"]) == 2
    assert "'lots' is not a size" in capsys.readouterr().err


def test_an_airlock_error_is_one_line_with_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "show", str(tmp_path / "none.json")]) == 2
    printed = capsys.readouterr()
    assert _lines(printed.err) == [
        f"airlock: error: {tmp_path / 'none.json'}: no such report; "
        "pass a report written by --report"
    ]
    assert "Traceback" not in printed.err


def test_an_error_after_the_report_is_printed_once_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRLOCK_TRUST_POLICY", str(tmp_path / "no-trust.toml"))
    model = tmp_path / "m.pkl"
    model.write_bytes(pickle.dumps({"a": 1}))
    for verbose in ([], ["-v"]):
        assert main([*verbose, "preflight", str(model), "--require-signature"]) == 1
        printed = capsys.readouterr()
        assert "AL812" in printed.out  # the report was shown
        assert _lines(printed.err) == [
            "airlock: error: a signature is required and it is missing; nothing was run; "
            "sign the model or drop --require-signature"
        ]


def test_ctrl_c_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def read(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("runner.cli.reports._read_report", read)
    assert main(["report", "show", "r.json"]) == 130
    assert _lines(capsys.readouterr().err) == ["airlock: interrupted; the sandbox was removed"]


def test_the_package_log_level_follows_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    levels: list[int] = []

    def read(path: Path) -> None:
        levels.append(logging.getLogger("runner").level)
        logging.getLogger("runner.controller.engine").debug("removing the sandbox failed")
        logging.getLogger("runner.controller.pool").warning("a warning is always shown")
        raise UsageError("no report")

    monkeypatch.setattr("runner.cli.reports._read_report", read)
    assert main(["report", "show", "r.json"]) == 2
    quiet = capsys.readouterr().err
    assert main(["-v", "report", "show", "r.json"]) == 2
    loud = capsys.readouterr().err
    assert levels == [logging.WARNING, logging.DEBUG]
    assert "removing the sandbox failed" not in quiet and "a warning is always shown" in quiet
    assert "runner.controller.engine: removing the sandbox failed" in loud
    # main leaves no handler behind: the package's logging is the application's to configure
    assert logging.getLogger("runner").handlers == []
    assert logging.getLogger("runner").level == logging.NOTSET


def test_a_swallowed_engine_error_is_seen_with_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import requests.exceptions

    from runner.controller import engine

    class Api:
        def kill(self, container_id: str) -> None:
            raise requests.exceptions.ConnectionError("the engine hung up")

    class Client:
        api = Api()

    def read(path: Path) -> None:
        engine.kill("0123456789abcdef")  # best effort: it does not raise
        raise UsageError("no report")

    monkeypatch.setattr(engine, "client", Client)
    monkeypatch.setattr("runner.cli.reports._read_report", read)
    assert main(["report", "show", "r.json"]) == 2
    assert _lines(capsys.readouterr().err) == ["airlock: error: no report"]
    assert main(["-v", "report", "show", "r.json"]) == 2
    err = capsys.readouterr().err
    assert "runner.controller.engine: killing 0123456789ab: ConnectionError" in err
    assert "the engine hung up" in err
