"""The hostile corpus under warm starts: each fixture's sandbox is a fresh container whose worker
a zygote forked (runner.controller.zygote), checked from the host as the corpus checks a cold
one (no marker on the host, the host's files unchanged, no container left) and detected by the
host's strace, which attaches to the forked worker from outside.

The subset is what a forked worker could do differently: reach for its tracer (now outside its
process tree) or pid 1 (now `sleep`), exhaust the cgroups it was moved into, make the calls the
tracer refuses, switch ABI, run a shell or a fileless program, touch the network. Last, the
zygote is shown unchanged by all of them: the same process, no model ever mapped, and a clean
model after them judged clean.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner
from runner.controller import engine
from runner.controller.zygote import Zygote
from tests.fixtures import models
from tests.hostile.corpus import CORPUS, Fixture
from tests.hostile.soundness_tracer import TRACER_CORPUS
from tests.hostile.test_corpus import run_fixture

pytestmark = pytest.mark.docker

NAMES = (
    "builtins.exec",
    "multiprocessing",
    "ctypes",
    "forward hook",
    "fork bomb",
    "memory bomb",
    "kill tracer",
    "sandbox probe",
    "environment + credentials",
    "sendmsg udp",
    "own socket",
    "pidfd signal",
    "process_vm_readv",
    "io_uring",
    "memfd execveat",
    "new mount api",
    "setuid root",
    "untraced clone",
    "int 0x80",
    "x32 syscall",
    "chdir relative write",
)
SUBSET = [fx for fx in CORPUS + TRACER_CORPUS if fx.name in NAMES]
WARM_NOTE = "warm start: the worker was forked"
# what the tracer of a warm start sees beyond a cold one's: the refused flag's own call (cold,
# the profile refuses it before strace's filter sees it)
WARM_ALSO = {"untraced clone": {"AL405"}}


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    with Zygote(runner.Policy(), formats=("torchscript", "torch")) as z:
        yield z


def test_the_subset_is_whole() -> None:
    assert sorted(fx.name for fx in SUBSET) == sorted(NAMES)


@pytest.mark.parametrize("fx", SUBSET, ids=[f.name for f in SUBSET])
def test_hostile_fixture_warm(fx: Fixture, tmp_path: Path, zygote: Zygote) -> None:
    marker = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    report, error = run_fixture(fx, tmp_path, zygote, marker)  # contained: checked there
    assert any(n.startswith(WARM_NOTE) for n in report.notes), report.notes
    ids = {f.rule_id for f in report.findings}
    # detected
    assert report.verdict is not runner.Verdict.CLEAN
    want = fx.expect | WARM_ALSO.get(fx.name, set())
    assert want <= ids, (fx.name, sorted(ids), [f.evidence for f in report.findings])
    if fx.name in {f.name for f in TRACER_CORPUS}:
        from tests.hostile.test_soundness_tracer import PROOF

        assert PROOF[fx.name](report, Path(marker).name), [e.summary for e in report.events]
    # complete
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert all(f.evidence for f in report.findings)
    if fx.error:
        assert error is not None and type(error).__name__ == fx.error, error


def test_the_zygote_is_unchanged_by_them(zygote: Zygote, tmp_path: Path) -> None:
    assert zygote.container is not None
    pid = engine.host_pid(zygote.container)
    assert pid is not None
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "/model" not in maps and "/airlock/run" not in maps
    x = models.sample_input()
    path = models.torchscript_model(tmp_path, x).path
    with runner.Sandbox(path, runner.Policy(), zygote=zygote) as sb:
        sb.infer(x)
    report = sb.report()
    assert any(n.startswith(WARM_NOTE) for n in report.notes), report.notes
    assert report.verdict is runner.Verdict.CLEAN, [f.evidence for f in report.findings]
    assert engine.host_pid(zygote.container) == pid  # the same process all along
