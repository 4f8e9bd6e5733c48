"""The traced set is kept in one place and held in step with what reads it: the table in
runner/telemetry/tracer.py's docstring, the handlers that turn each call into an event, the
calls the tracer refuses, and the bookkeeping's caps (a run that outgrows them is not clean)."""

from __future__ import annotations

import pytest

from runner.rules.evaluation import HostFacts, evaluate
from runner.telemetry import procstate, syscalls, tracer
from runner.telemetry import strace as _strace
from runner.telemetry.events import Event, Phase, PhaseClock
from tests.fixtures.traces import T0, line, s

CLOCK = PhaseClock(((T0 - 1, Phase.STARTUP), (T0 + 1, Phase.LOAD)))


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        self.events.append(event)


def _run(log: str) -> list[Event]:
    sink = _Sink()
    syscalls.tracer_events(_strace.parse(log.encode()), CLOCK, sink, "/airlock/run/worker.sock")
    return sink.events


def test_every_family_is_a_row_of_the_documented_table() -> None:
    doc = tracer.__doc__ or ""
    rows = {ln.split()[0] for ln in doc.splitlines() if ln and not ln.startswith((" ", "-"))}
    assert {f.name for f in tracer.FAMILIES} <= rows


def test_the_traced_set_is_whole_and_every_call_has_a_handler() -> None:
    traced = tracer.TRACED.split(",")
    assert len(traced) == len(set(traced)) and "" not in traced
    assert set(tracer.REFUSED.split(",")) <= set(traced)
    assert set(traced) == set(syscalls.HANDLERS)
    assert tracer.environment(True)["AIRLOCK_TRACE_SET"] == tracer.TRACED


@pytest.mark.parametrize("name", tracer.REFUSED.split(","))
def test_every_refused_call_is_an_event_and_a_finding(name: str) -> None:
    log = line(10, 0.0, f"execve({s('/w')}, [], 0x1) = 0")
    log += line(10, 2.0, f"{name}(1, 0, 0) = -1 EPERM (Operation not permitted) (INJECTED)")
    events = _run(log)
    assert [e.result for e in events] == ["refused"]
    findings = evaluate(events, HostFacts())
    assert findings and all(f.severity.value == "critical" for f in findings), findings


def test_outgrowing_the_bookkeeping_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procstate, "MAX_PROCESSES", 3)
    log = line(10, 0.0, f"execve({s('/w')}, [], 0x1) = 0")
    for i in range(5):
        log += line(10, 2.0 + i / 10, f"clone(child_stack=NULL, flags=SIGCHLD) = {20 + i}")
    untracked = [e for e in _run(log) if e.kind == "tracer.untracked"]
    assert untracked and "processes beyond" in untracked[0].summary
    assert "AL306" in {f.rule_id for f in evaluate(untracked, HostFacts())}


def test_a_call_no_handler_could_read_is_counted_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(c: object) -> None:
        raise ValueError("a shape nobody expected")

    monkeypatch.setitem(syscalls.HANDLERS, "kill", broken)
    log = line(10, 0.0, f"execve({s('/w')}, [], 0x1) = 0") + line(10, 2.0, "kill(1, 0) = 0")
    untracked = [e for e in _run(log) if e.kind == "tracer.untracked"]
    assert untracked and "could not follow (1)" in untracked[0].summary


def test_a_process_killed_by_sigsys_is_tracer_evasion() -> None:
    # the profile admits x86_64 calls only: a 32-bit or x32 one kills its process with SIGSYS
    log = line(10, 0.0, f"execve({s('/w')}, [], 0x1) = 0")
    log += line(10, 2.0, "clone(child_stack=NULL, flags=SIGCHLD) = 20")
    log += line(20, 2.1, "+++ killed by SIGSYS (core dumped) +++")
    evasion = [e for e in _run(log) if e.kind == "priv.evasion"]
    assert evasion and evasion[0].pid == 20 and evasion[0].phase is Phase.LOAD
    assert "AL405" in {f.rule_id for f in evaluate(evasion, HostFacts())}
