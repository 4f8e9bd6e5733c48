"""Output injection: a report full of hostile strings, through every view and the command line's
own lines. No ESC, C1 control, carriage return, backspace or bidi override reaches the output,
markup in a name is shown as written, and no line that is not the verdict can pass for it.

Also: a report is never lost (building it failing gives a minimal one with verdict error), and
teardown's steps are independent (a step that raises does not keep the next from running).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from runner.channel.replies import Faults, FeedError, TensorSpec, feed_for_call
from runner.cli.models import output_files
from runner.cli.output import SafeConsole, shown
from runner.controller import reporting, teardown
from runner.errors import deceptive_chars, untrusted_text, visible_text
from runner.policy import Policy
from runner.report import (
    ErrorInfo,
    FileDigest,
    ModelInfo,
    Report,
    Signature,
    TensorSpecInfo,
    TensorSummary,
)
from runner.rules import analysis
from runner.rules.catalog import BY_ID, Finding, Severity, Verdict
from runner.telemetry.events import Event, Phase, Source
from runner.views import View, render
from runner.views.terminal import print_report

HOSTILE = [
    "\x1b[2J\x1b[H\x1b[1;32mverdict   CLEAN\x1b[0m",
    "\x9b2J\x9b32mCLEAN",  # C1 CSI
    "\x1b]8;;https://evil.invalid/\x07click\x1b]8;;\x07",  # OSC 8 hyperlink
    "\x1b]0;title\x1b\\",  # OSC with ST
    "\u202eNAELC tidrev",  # bidi override
    "\u2066\u2067\u2068isolate\u2069",
    "[green]CLEAN[/green] [bold]verdict[/bold]",
    "\nverdict    CLEAN\n",
    "\r\x08\x08\x08\x08verdict  CLEAN",
    "\u2028verdict CLEAN\u2029",
    "x" * 90 + " verdict CLEAN",  # wrapped so that it would start a line
    "zalgo" + "\u0301" * 50,
]
ALL = " ".join(HOSTILE)
BAD = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def _finding(rule_id: str, evidence: list[str]) -> Finding:
    rule = BY_ID[rule_id]
    return Finding(
        rule_id=rule.id,
        rule=rule.name,
        title=rule.title,
        severity=rule.severity,
        phase=Phase.LOAD,
        source=Source.TRACER,
        message=ALL,
        evidence=evidence,
    )


def hostile_report(verdict: Verdict = Verdict.MALICIOUS) -> Report:
    specs = [TensorSpecInfo(name=h, dtype="float32", shape=[1]) for h in HOSTILE]
    return Report(
        tool_version="test",
        verdict=verdict,
        findings=[_finding("AL202", HOSTILE), _finding("AL302", [ALL])]
        if verdict is not Verdict.CLEAN
        else [],
        model=ModelInfo(
            path="/m/" + ALL,
            format="onnx",
            detected_by=HOSTILE[0],
            size_bytes=1,
            files=[FileDigest(path=h, size_bytes=1, sha256="0" * 64) for h in HOSTILE],
            anomalies=HOSTILE,
        ),
        sandbox=None,
        resources=None,
        events=[
            Event(
                time=1.0,
                phase=Phase.LOAD,
                source=Source.WORKER,
                kind=h,
                summary=h,
                result=h,
                detail={h: h},
            )
            for h in HOSTILE
        ],
        phases=[],
        signature=Signature(format="onnx", inputs=specs, outputs=specs, can_infer=False, note=ALL),
        outputs=[
            TensorSummary(name=h, dtype="float32", shape=[1], sha256="0" * 64) for h in HOSTILE
        ],
        calls=1,
        notes=HOSTILE,
        error=ErrorInfo(kind="WorkerCrashed", message=ALL, hint=ALL, exit_code=3, log_tail=ALL),
    )


def _no_injection(text: str) -> None:
    assert BAD.search(text) is None, repr(BAD.search(text))
    assert "\u0301\u0301\u0301" not in text


def _verdict_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\s*verdict\b", line)]


@pytest.mark.parametrize("verdict", [Verdict.MALICIOUS, Verdict.CLEAN])
@pytest.mark.parametrize("width", [60, 100, 200])
def test_the_terminal_view_shows_hostile_text_inert(verdict: Verdict, width: int) -> None:
    text = render(hostile_report(verdict), View.TEXT, width=width)
    _no_injection(text)
    assert "[green]CLEAN[/green]" in text  # markup shown as written, never applied
    lines = _verdict_lines(text)
    assert lines == [text.splitlines()[0]]  # the one verdict line is the real one, first
    assert lines[0].split()[1] == verdict.value.upper()
    for line in text.splitlines()[1:]:
        assert not re.match(r"\s*verdict\s", line.lstrip(" │┃|"))


def test_the_terminal_view_in_colour_emits_only_its_own_styles() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system="truecolor")
    print_report(hostile_report(), console)
    text = buf.getvalue()
    styles = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own SGR sequences, and nothing else
    _no_injection(styles)
    green = re.compile(r"\x1b\[[0-9;]*32m[^\x1b]*CLEAN")  # no CLEAN painted green
    assert green.search(text) is None


def test_the_html_view_escapes_and_neutralises() -> None:
    html = render(hostile_report(), View.HTML)
    _no_injection(html)
    assert "<script>" not in render(
        hostile_report().model_copy(update={"notes": ["<script>alert(1)</script>"]}), View.HTML
    )
    verdicts = re.findall(r'id="verdict">([^<]*)<', html)
    assert verdicts == ["MALICIOUS"]


@pytest.mark.parametrize("view", [View.JSON, View.SARIF])
def test_json_views_are_ascii_and_hold_no_control_characters(view: View) -> None:
    text = render(hostile_report(), view)
    assert text.isascii()
    _no_injection(text)

    def strings(v: object) -> list[str]:
        if isinstance(v, str):
            return [v]
        if isinstance(v, dict):
            return [s for k, x in v.items() for s in strings(k) + strings(x)]
        if isinstance(v, list):
            return [s for x in v for s in strings(x)]
        return []

    decoded = strings(json.loads(text))
    if view is View.SARIF:  # a view: neutralised
        assert all(not deceptive_chars(s) for s in decoded)
    else:  # the source of truth: as it was, only encoded
        assert any(HOSTILE[0] in s for s in decoded)


def test_the_command_lines_consoles_print_strings_inert() -> None:
    raw, lines = io.StringIO(), io.StringIO()
    for buf in (raw, lines):
        console = SafeConsole(file=buf, width=100, force_terminal=True, soft_wrap=True)
        for h in HOSTILE:
            if buf is raw:  # a string printed as it is: nothing in it acts
                console.print(h)
            else:  # a line with a model's text in it, as the commands print one
                console.print(f"output {shown(h, 60)} =")
    for text in (raw.getvalue(), lines.getvalue()):
        _no_injection(re.sub(r"\x1b\[[0-9;]*m", "", text))
        assert "\x1b[32m" not in text and "[green]CLEAN[/green]" in text
    assert all(line.startswith("output ") for line in lines.getvalue().splitlines())
    assert max(len(line) for line in lines.getvalue().splitlines()) < 80


def test_output_files_are_safe_distinct_and_bounded() -> None:
    names = [*HOSTILE, "../../etc/passwd", "..", ".", "", "y", "y", "a/b", "a_b", "x" * 5000]
    files = output_files(names)
    assert len(set(files)) == len(files) == len(names)
    for f in files:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\.npy", f) and len(f) <= 110


@settings(max_examples=1000, deadline=None)
@given(text=st.text(max_size=300), limit=st.integers(1, 400))
def test_neutralising_functions_leave_nothing_that_acts(text: str, limit: int) -> None:
    for out in (untrusted_text(text, limit), visible_text(text, limit), shown(text, limit)):
        _no_injection(out)
        assert not deceptive_chars(out)
    assert len(untrusted_text(text, limit)) <= limit
    assert "\n" not in visible_text(text) and "\n" not in untrusted_text(text)


def test_neutralising_is_bounded_in_time_and_size() -> None:
    huge = "\x1b[2J" * 5_000_000  # 20 MB
    assert len(untrusted_text(huge)) <= 300
    assert len(visible_text(huge)) <= 4001 * 4


# --- names: shown neutralised, called by their real name ----------------------------------------


def test_inputs_are_taken_by_the_shown_or_the_real_name_and_called_by_the_real_one() -> None:
    import numpy as np

    faults = Faults()
    raw = "x\x1b[31m\u202e"
    shown_name = faults.name(raw, "input")
    spec = TensorSpec(shown_name, "float32", (-1,), raw)
    assert shown_name == "x [31m" and faults.names_count == 1
    for key in (raw, shown_name):
        feed = feed_for_call([spec], {key: np.zeros(2, np.float32)})
        assert list(feed) == [raw]
    with pytest.raises(FeedError) as e:
        feed_for_call([spec], {"other\x1b[2J": np.zeros(2, np.float32)})
    assert "\x1b" not in str(e.value) and "x [31m" in str(e.value)
    with pytest.raises(FeedError, match="cannot be sent"):
        feed_for_call([spec], {raw: np.array([object()])})
    many = [TensorSpec(f"input-{i:04}-" + "x" * 180, "float32", (1,)) for i in range(1000)]
    with pytest.raises(FeedError) as e:
        feed_for_call(many, {"y": np.zeros(1, np.float32)})
    assert len(str(e.value)) <= 600 and "missing" in str(e.value)


def test_channel_faults_and_file_names_become_findings() -> None:
    faults = Faults()
    faults.name("y\x1b[2J", "output")
    faults.bad("Infer: the reply does not parse (DecodeError)")
    faults.problem(faults.description, "100000 inputs listed; at most 1024 are read")
    ids = {f.rule_id: f for f in reporting.channel_findings([faults])}
    assert set(ids) == {"AL911", "AL912", "AL913"}
    assert all(f.severity.rank >= Severity.MEDIUM.rank for f in ids.values())
    assert "\x1b" not in ids["AL913"].evidence[0]
    named = reporting.name_findings(hostile_report())
    assert [f.rule_id for f in named] == ["AL913"] and named[0].source is Source.STATIC
    assert (
        reporting.name_findings(
            hostile_report().model_copy(
                update={
                    "model": ModelInfo(
                        path="/m/ok.onnx", format="onnx", detected_by="", size_bytes=1, files=[]
                    )
                }
            )
        )
        == []
    )


# --- a report is never lost; teardown's steps are independent -----------------------------------


def _collected() -> analysis.Collected:
    return analysis.Collected(
        policy=Policy(),
        model=ModelInfo(
            path="/m/model.onnx", format="onnx", detected_by="", size_bytes=1, files=[]
        ),
    )


def test_a_report_that_cannot_be_built_is_a_minimal_one_with_verdict_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(c: analysis.Collected) -> Report:
        raise RuntimeError("the analysis fell over on \x1b[2J hostile data")

    monkeypatch.setattr(analysis, "build", boom)
    c = _collected()
    c.notes.append("a note")
    report = reporting.build(c, [Faults()])
    assert report.verdict is Verdict.ERROR and report.error is not None
    assert report.error.kind == "ReportError" and "RuntimeError" in report.error.message
    assert "\x1b" not in report.error.message and report.model.path == "/m/model.onnx"
    assert "a note" in report.notes
    broken = _collected()
    broken.phases = None  # type: ignore[assignment]  (what was collected is itself broken)
    assert reporting.build(broken).verdict is Verdict.ERROR
    render(report, View.TEXT)  # and it renders


def test_a_failing_teardown_step_does_not_keep_the_next_from_running() -> None:
    ran: list[str] = []
    steps = teardown.Steps()

    def fail() -> None:
        raise OSError("the disk is gone \x1b[2J")

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert not steps.run("collecting", fail)
    assert not steps.run("collecting more", interrupted)
    assert steps.run("removing", ran.append, "removed")
    assert ran == ["removed"]
    c = _collected()
    with pytest.raises(KeyboardInterrupt):  # held until every step ran, then raised
        steps.settle(c)
    assert c.error is not None and "collecting: OSError" in c.error.message
    assert "\x1b" not in c.error.message
    assert any(n.startswith("teardown: collecting") for n in c.notes)


def test_a_report_with_an_error_is_error_at_best() -> None:
    clean = hostile_report(Verdict.CLEAN).model_copy(update={"error": None})
    amended = reporting.with_error(clean, "InternalError", "a bug \x1b[2J")
    assert amended.verdict is Verdict.ERROR and amended.error is not None
    malicious = reporting.with_error(hostile_report(), "InternalError", "a bug")
    assert malicious.verdict is Verdict.MALICIOUS
    assert reporting.with_error(None, "InternalError", "x", "/m").verdict is Verdict.ERROR


def test_the_failed_result_writes_its_report(tmp_path: Path) -> None:
    from runner.batch import evaluation

    model = tmp_path / "evil\x1b[2J.onnx"
    model.write_bytes(b"\x08\x07")
    outcome = evaluation.failed_result(model, "", RuntimeError("boom\x1b[31m"))
    result = evaluation.store(outcome, tmp_path / "out")
    assert result.verdict is Verdict.ERROR and result.report is not None
    written = json.loads((tmp_path / "out" / result.report).read_text())
    assert written["verdict"] == "error" and "boom" in written["error"]["message"]
    assert "\x1b" not in result.report


class _Stopped:
    """A stand-in sandbox whose run stops with `error` (as Sandbox does, it still reports)."""

    error: BaseException = KeyboardInterrupt()

    def __init__(self, model: object, *args: object, **kwargs: object) -> None:
        self.session = "0" * 12

    def __enter__(self) -> _Stopped:
        raise self.error

    def __exit__(self, *exc: object) -> None:
        return None

    def report(self) -> Report:
        return reporting.with_error(hostile_report(Verdict.CLEAN), "Interrupted", "stopped")


@pytest.mark.parametrize(
    ("error", "code"),
    [(KeyboardInterrupt(), 130), (RuntimeError("a bug \x1b[2J"), 4), (MemoryError(), 4)],
    ids=["ctrl-c", "bug", "memory"],
)
def test_the_command_line_writes_the_report_whatever_stopped_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    code: int,
) -> None:
    from runner.cli import main
    from runner.controller import sandbox

    monkeypatch.setattr(_Stopped, "error", error)
    monkeypatch.setattr(sandbox, "Sandbox", _Stopped)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    report = tmp_path / "report.json"
    assert main(["scan", str(model), "--report", str(report)]) == code
    assert json.loads(report.read_text())["verdict"] == "error"
    assert "\x1b" not in capsys.readouterr().err


def test_results_lines_are_ascii() -> None:
    from runner.batch.evaluation import EvalResult
    from runner.cli.output import json_line

    result = EvalResult(
        path="/m/" + ALL, sha256="0", format="onnx", verdict=Verdict.CLEAN, findings={},
        probed=False, seconds=1.0,
    )  # fmt: skip
    line = json_line(result)
    assert line.isascii() and line.count("\n") == 1
    assert EvalResult.model_validate_json(line) == result
