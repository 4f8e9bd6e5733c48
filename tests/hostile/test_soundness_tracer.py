"""The tracer's former blind spots, each run in a real sandbox (runc) and checked from the host:

- contained: no marker on the host, the host's files unchanged, the container and the session's
  directories (whose run/ the payloads write into) gone;
- detected: the expected rule ids in the report, the verdict not clean, and the event that
  proves it (the send itself, the resolved path, the refused call) among the report's events;
- complete: phases, resources, the trace, evidence for every finding.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import runner
from runner.controller import sessions
from runner.report import Report
from tests.hostile.corpus import Fixture
from tests.hostile.soundness_tracer import TRACER_CORPUS
from tests.hostile.test_corpus import _containers, _snapshot


def contained_run(fx: Fixture, tmp_path: Path) -> tuple[Report, str]:
    marker = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    models = tmp_path / "m"
    models.mkdir()
    (tmp_path / "canary.txt").write_text("the host's file, unchanged\n")
    path = fx.build(models, marker)
    before = _snapshot(tmp_path)
    sb = runner.Sandbox(path, runner.Policy(**fx.policy))  # type: ignore[arg-type]
    try:
        with sb:
            pass
    except runner.AirlockError:
        pass
    report = sb.report()
    assert not Path(marker).exists(), "the payload's marker appeared on the host"
    assert _snapshot(tmp_path) == before, "host files changed"
    assert _containers(sb.session) == []
    assert not (sessions.tmp_base() / f"{sessions.DIR_PREFIX}{sb.session}").exists()
    return report, Path(marker).name


def _events(r: Report, kind: str) -> list[runner.Event]:
    return [e for e in r.events if e.source.value == "tracer" and e.kind == kind]


def _path_in(kind: str, path: str) -> Callable[[Report, str], bool]:
    def check(r: Report, name: str) -> bool:
        want = path.replace("NAME", name)
        return any(
            want in (e.detail.get("paths") or [e.detail.get("path")]) for e in _events(r, kind)
        )

    return check


def _send(kind: str, via: str) -> Callable[[Report, str], bool]:
    return lambda r, _: any(e.detail.get("via") == via for e in _events(r, kind))


def _refused(kind: str, syscall: str) -> Callable[[Report, str], bool]:
    return lambda r, _: any(
        e.detail.get("syscall") == syscall and e.result == "refused" for e in _events(r, kind)
    )


# the event that shows the technique itself was seen, beyond the rule ids
PROOF: dict[str, Callable[[Report, str], bool]] = {
    "sendmsg udp": _send("net.sendmsg", "call"),
    "sendmmsg udp": lambda r, _: any(
        len(e.detail.get("destinations") or []) == 2 for e in _events(r, "net.sendmmsg")
    ),
    "connected send": _send("net.sendto", "connect"),
    "own socket": _send("net.sendto", "connect"),
    "pass fds": lambda r, _: any(e.detail.get("passes_fds") for e in _events(r, "net.sendmsg")),
    "rt_sigqueueinfo": lambda r, _: (
        {"rt_sigqueueinfo", "rt_tgsigqueueinfo"}
        <= {str(e.detail.get("syscall")) for e in _events(r, "signal.send")}
    ),
    "pidfd signal": lambda r, _: any(
        e.detail.get("target") == 1 for e in _events(r, "signal.send")
    ),
    "pidfd_getfd": _refused("process.reach", "pidfd_getfd"),
    "process_vm_readv": _refused("process.reach", "process_vm_readv"),
    "io_uring": _refused("priv.evasion", "io_uring_setup"),
    "memfd execveat": lambda r, _: any(
        e.detail.get("syscall") == "execveat" and e.detail.get("fileless")
        for e in _events(r, "process.exec")
    ),
    "memfd /proc/self/fd": lambda r, _: any(
        str(e.detail.get("path", "")).startswith("/memfd:") for e in _events(r, "process.exec")
    ),
    "chdir relative write": _path_in("file.write", "/etc/airlock-probe"),
    "chdir gadget": _path_in("file.write", "/airlock/run/NAME"),
    "dotted run path": _path_in("file.write", "/airlock/run/NAME"),
    "dirfd run write": _path_in("file.write", "/airlock/run/NAME"),
    "task cwd write": _path_in("file.write", "/airlock/run/NAME"),
    "symlink run write": _path_in("file.write", "/airlock/run/NAME"),
    "sysv msgsnd": lambda r, _: any(
        e.detail.get("syscall") == "msgsnd" for e in _events(r, "net.ipc")
    ),
    "posix mq_send": lambda r, _: any(
        e.detail.get("syscall") == "mq_timedsend" for e in _events(r, "net.ipc")
    ),
    "new mount api": lambda r, _: (
        {"open_tree", "fsopen", "unshare"}
        <= {
            str(e.detail.get("syscall")) for e in _events(r, "priv.escape") if e.result == "refused"
        }
    ),
    "setuid root": lambda r, _: len(_events(r, "priv.setid")) >= 2,
    "seccomp listener": _refused("priv.evasion", "seccomp"),
    "untraced clone": lambda r, _: any(
        "refused-untraced" in " ".join(map(str, e.detail.get("argv") or []))
        for e in _events(r, "process.exec")
    ),
    "int 0x80": lambda r, _: any(
        e.detail.get("signal") == "SIGSYS" for e in _events(r, "priv.evasion")
    ),
    "x32 syscall": lambda r, _: any(
        e.detail.get("signal") == "SIGSYS" for e in _events(r, "priv.evasion")
    ),
}


def test_every_fixture_has_its_proof() -> None:
    assert {fx.name for fx in TRACER_CORPUS} == set(PROOF)


@pytest.mark.parametrize("fx", TRACER_CORPUS, ids=[f.name for f in TRACER_CORPUS])
def test_tracer_blind_spot(fx: Fixture, tmp_path: Path) -> None:
    report, name = contained_run(fx, tmp_path)
    ids = {f.rule_id for f in report.findings}
    # detected
    assert report.verdict is not runner.Verdict.CLEAN
    assert fx.expect <= ids, (fx.name, sorted(ids), [f.evidence for f in report.findings])
    assert PROOF[fx.name](report, name), [e.summary for e in report.events]
    # complete
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.resources is not None and report.resources.timeline
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert all(f.evidence for f in report.findings)


@pytest.mark.runsc
def test_the_workers_own_sends_are_baseline_under_gvisor(tmp_path: Path) -> None:
    # Under gVisor the data plane's blocking accept returns long after it started, and the
    # number it returns was used by files meanwhile: the worker's sends stay baseline.
    import numpy as np

    model = Path(__file__).resolve().parents[2] / "examples" / "tiny.onnx"
    sb = runner.Sandbox(model, runner.Policy(runtime=runner.Runtime.RUNSC))
    with sb:
        for _ in range(2):
            sb.infer({"x": np.zeros((1, 4), np.float32)})
    report = sb.report()
    assert report.verdict is runner.Verdict.CLEAN, [f.evidence for f in report.findings]
    assert b"sendmsg(" in sb.trace_log  # the sends were traced, and judged the worker's
