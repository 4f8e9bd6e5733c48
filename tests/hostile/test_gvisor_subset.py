"""The hostile corpus's gVisor subset: a few fixtures run under runsc with gVisor's trace points
(runsc's default tracer), each checked from the host as the corpus checks it under runc:

- contained: no marker on the host, the host's files unchanged, no container and no session
  directory (where the host's sink listened) left;
- detected by the tracer: the verdict is not clean, the expected ids are among the findings made
  from the tracer's events (not only the static read's or the worker's own), and the evidence
  names the call;
- complete: the log came from gVisor's points whole (nothing dropped, nothing unread).

Kept small: runsc runs on gVisor's ptrace platform here. The payloads reach the network, the
resolver, files outside the scratch space, a fileless exec and a file read from a later call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

import runner
from runner.controller import sessions
from runner.report import Report
from tests.fixtures import hostile
from tests.hostile.corpus import CORPUS, Fixture
from tests.hostile.soundness_tracer import TRACER_CORPUS
from tests.hostile.test_corpus import run_fixture

pytestmark = [pytest.mark.runsc, pytest.mark.docker]


def _pickle(build: Callable[[], bytes]) -> Callable[[Path, str], Path]:
    return lambda d, marker: hostile.write(d / "payload.pkl", build())


def _cites(text: str) -> Callable[[Report, str], bool]:
    def check(r: Report, name: str) -> bool:
        return any(text in e for f in r.findings if f.source.value == "tracer" for e in f.evidence)

    return check


def _named(corpus: list[Fixture], name: str) -> Fixture:
    (fx,) = [f for f in corpus if f.name == name]
    return fx


def _proof(name: str) -> Callable[[Report, str], bool]:
    from tests.hostile.test_soundness_tracer import PROOF

    return PROOF[name]


SUBSET: list[tuple[Fixture, Callable[[Report, str], bool]]] = [
    (
        Fixture(
            "exec + connect",
            "a shell that connects to 127.0.0.1:9",
            _pickle(hostile.exec_connect_loopback),
            frozenset({"AL101"}),
        ),
        _cites("connect AF_INET 127.0.0.1:9"),
    ),
    (
        Fixture(
            "lookup .invalid",
            "a name lookup under .invalid",
            _pickle(hostile.lookup_invalid),
            frozenset({"AL102"}),
        ),
        _cites(":53"),
    ),
    (
        Fixture(
            "write outside scratch",
            "a write into the worker's own code directory",
            _pickle(hostile.write_outside_scratch),
            frozenset({"AL301"}),
        ),
        _cites("open /opt/airlock/implant.py for writing"),
    ),
    # a raw point: the destination in the msghdr is not known, and the send is flagged for it
    (_named(TRACER_CORPUS, "sendmsg udp"), _cites("[tracer] sendmsg fd")),
    (_named(TRACER_CORPUS, "memfd execveat"), _proof("memfd execveat")),
    (_named(CORPUS, "4th-call TorchScript"), _cites("read /proc/self/environ")),
]


@pytest.fixture(autouse=True)
def _default_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRLOCK_RUNSC_TRACER", raising=False)  # gvisor, the default


@pytest.mark.parametrize(("fx", "proof"), SUBSET, ids=[fx.name for fx, _ in SUBSET])
def test_under_gvisor(fx: Fixture, proof: Callable[[Report, str], bool], tmp_path: Path) -> None:
    under = dataclasses.replace(fx, policy={**fx.policy, "runtime": runner.Runtime.RUNSC})
    before = set(sessions.tmp_base().glob(f"{sessions.DIR_PREFIX}*"))
    report, _ = run_fixture(under, tmp_path)  # contained: marker, host files, container
    assert set(sessions.tmp_base().glob(f"{sessions.DIR_PREFIX}*")) <= before
    assert report.sandbox is not None and report.sandbox.runtime == "runsc"
    assert report.tracer is not None and report.tracer.kind == "gvisor"
    # detected, by the tracer
    assert report.verdict is not runner.Verdict.CLEAN
    traced = {f.rule_id for f in report.findings if f.source.value == "tracer"}
    assert fx.expect <= traced, (fx.name, sorted(traced), [f.evidence for f in report.findings])
    assert proof(report, ""), [f.evidence for f in report.findings]
    # complete: every point received and read
    assert report.tracer.malformed_lines == 0 and report.tracer.syscalls > 100
    assert not [n for n in report.notes if "dropped" in n or "never connected" in n]
