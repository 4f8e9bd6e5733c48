"""The hostile corpus's gVisor subset: a few fixtures run under runsc with gVisor's trace points
(runsc's default tracer), each checked from the host as the corpus checks it under runc:

- contained: no marker on the host, the host's files unchanged, no container and no session
  directory (where the host's sink listened) left;
- detected by the tracer: the verdict is not clean, the expected ids are among the findings made
  from the tracer's events (not only the static read's or the worker's own), and the evidence
  names the call;
- complete: the log came from gVisor's points whole (nothing dropped, nothing unread).

Kept small: each runsc sandbox takes seconds here. The payloads reach the network, the
resolver, files outside the scratch space, a fileless exec and a file read from a later call;
and one writes through a path that is not UTF-8, whose point runsc cannot send at all.
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


# Written against gVisor's points by an attacker review: each was judged without the tracer's
# finding before its fix (docs/gvisor-tracer.md).
RENAMED_THREAD = """
import ctypes
ctypes.CDLL(None).prctl(15, b"\\xff\\xfeA", 0, 0, 0)  # PR_SET_NAME: not UTF-8
open("/proc/self/environ", "rb").read()
"""
PASSED_SOCKET = """
import socket
a, b = socket.socketpair()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
socket.send_fds(a, [b"x"], [u.fileno()])
a.close(); u.close()
_, fds, _, _ = socket.recv_fds(b, 16, 1)
socket.socket(fileno=fds[0]).sendto(b"exfil", ("127.0.0.1", 9))
"""
TEARDOWN_UNLINK = """
import gc, os, threading
from runner.worker import server
svc = [o for o in gc.get_objects() if isinstance(o, server.WorkerService)][0]
class AtShutdown(threading.Event):
    def set(self):
        try:
            os.unlink("/airlock/run/data.sock")
        finally:
            os._exit(0)  # before gRPC removes its socket
svc._done = AtShutdown()
"""


def _code(source: str) -> Callable[[Path, str], Path]:
    return lambda d, marker: hostile.write(d / "payload.pkl", hostile.code_pickle(source))


def _event(kind: str, key: str) -> Callable[[Report, str], bool]:
    return lambda r, _: any(
        e.kind == kind and e.detail.get(key) for e in r.events if e.source.value == "tracer"
    )


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
    (
        Fixture(
            "renamed thread",
            "a thread renamed with bytes that are not UTF-8, then a sensitive read",
            _code(RENAMED_THREAD),
            frozenset({"AL303"}),
        ),
        _cites("read /proc/self/environ"),
    ),
    (
        Fixture(
            "passed socket",
            "a UDP socket passed over a socketpair, then a sendto 127.0.0.1:9 on it",
            _code(PASSED_SOCKET),
            frozenset({"AL105", "AL108"}),
        ),
        _event("net.sendmsg", "passes_fds"),
    ),
    (
        Fixture(
            "teardown unlink",
            "an unlink of the data socket at shutdown, exiting before gRPC removes its own",
            _code(TEARDOWN_UNLINK),
            frozenset({"AL301"}),
        ),
        lambda r, _: not any("taken for gRPC" in n for n in r.notes),
    ),
]


NOT_UTF8_SOURCE = """
import torch

class W(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = "/airlock/run/QQpwn"

    def forward(self, x):
        t = torch.from_file(self.p, shared=True, size=16, dtype=torch.uint8)
        t.fill_(42)
        return x * 0.0 + t[:4].to(torch.float32)
"""


def not_utf8_write(d: Path, marker: str) -> Path:
    # TorchScript whose forward writes into Airlock's run directory through a path that is not
    # UTF-8 (its bytes patched into the archive after scripting): runsc cannot marshal the
    # open's point and drops it; only its raw twin comes
    import importlib.util
    import io
    import sys
    import zipfile

    import torch

    src = d / "tsw_src.py"
    src.write_text(NOT_UTF8_SOURCE)
    spec = importlib.util.spec_from_file_location("tsw_src", src)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tsw_src"] = mod
    spec.loader.exec_module(mod)
    plain = d / "plain.pt"
    torch.jit.script(mod.W()).save(str(plain))
    buf = io.BytesIO()
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info).replace(b"QQpwn", b"\xff\xfepwn"))
    plain.unlink()
    src.unlink()
    out = d / "not_utf8.pt"
    out.write_bytes(buf.getvalue())
    return out


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


def test_a_point_runsc_cannot_send_keeps_the_verdict_from_clean(tmp_path: Path) -> None:
    import numpy as np

    fx = Fixture(
        "not UTF-8 path",
        "a TorchScript write into /airlock/run through a path that is not UTF-8",
        not_utf8_write,
        frozenset({"AL905"}),
        infer=np.zeros((1, 4), np.float32),
        policy={"runtime": runner.Runtime.RUNSC},
    )
    report, _ = run_fixture(fx, tmp_path)  # contained, seen from the host
    assert report.tracer is not None and report.tracer.kind == "gvisor"
    assert report.verdict is not runner.Verdict.CLEAN
    evidence = [e for f in report.findings if f.rule_id == "AL905" for e in f.evidence]
    lost = "gvisor: 1 openat call(s) whose point runsc did not send"  # that one call, no other
    assert any(lost in e and "1 of them for writing" in e for e in evidence), evidence
