"""Host-side work stays inside its limits (issue class 6), seen from the host.

Every fixture of tests/hostile/soundness_host_limits.py runs in a real sandbox, under a timeout
(a FIFO opened by the host would hang the test, not fail it), and is checked for:

- containment: no marker on the host, the host's files unchanged, the container, the session
  directory and its mounts gone, the host's disk not filled (a private copy of a sparse file
  keeps its holes: its blocks on disk are counted);
- detection: the rule of the weakness (AL703 to AL708) at medium or above, verdict not clean;
- completeness: a report with its phases, findings with evidence, and the cause of any error.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

import runner
from runner.controller import staging
from runner.report import file_digests
from runner.rules.catalog import Severity
from runner.static import preflight
from tests.hostile import soundness_host_limits as hl

ST = {"TIME_BASE_S": 0.2, "TIME_PER_GIB_S": 0.0}  # a bound every static read here outlasts

CASES = [
    hl.Case(
        "FIFO shard", "a FIFO named as a weights shard", hl.fifo_as_shard, frozenset({"AL704"})
    ),
    hl.Case(
        "FIFO config and socket",
        "a FIFO named tokenizer_config.json in a subdirectory, and a Unix socket file",
        hl.fifo_config_and_socket,
        frozenset({"AL704"}),
    ),
    hl.Case(
        "symlink self-loop",
        "weights.bin -> weights.bin, and a -> b -> a (ELOOP)",
        hl.self_loop,
        frozenset({"AL705"}),
    ),
    hl.Case(
        "directory cycle",
        "sub/back -> .. and here -> . (a link-following walk never ends)",
        hl.directory_cycle,
        frozenset({"AL705"}),
    ),
    hl.Case(
        "5000 deep",
        "5000 nested directories, the payload at the bottom",
        hl.nested_5000,
        frozenset({"AL706"}),
    ),
    hl.Case(
        "long names",
        "40 levels of 250-character names: the path outgrows PATH_MAX",
        hl.long_names,
        frozenset({"AL706"}),
    ),
    hl.Case(
        "50 GB sparse 0600",
        "a 0600 file of 50 GB, all holes after a pickle: it needs a private copy",
        hl.sparse_50g,
        frozenset({"AL707"}),
        needs_copy=True,
    ),
    hl.Case(
        "sparse shard, 0700 directory",
        "a 0700 model directory whose 0600 shard is 20 GB of holes",
        hl.sparse_shard_in_private_dir,
        frozenset({"AL707"}),
        needs_copy=True,
    ),
    hl.Case(
        "ONNX padding",
        "ONNX's first field, then 6 MiB of empty fields before the graph",
        hl.onnx_padding,
        frozenset({"AL708"}),
    ),
    hl.Case(
        "zip directory claims everything",
        "zip magic, 64 MiB of holes, a central directory said to span them",
        hl.zip_directory_claims_everything,
        frozenset({"AL708"}),
    ),
    hl.Case(
        "opcode flood",
        "four million EMPTY_TUPLE/POP pairs before the payload: a slow walk",
        hl.opcode_flood,
        frozenset({"AL703"}),
        patch=ST,
    ),
    hl.Case(
        "slow CRC",
        "a zip member of 1.5 GB of holes whose CRC the static read checks",
        hl.slow_crc,
        frozenset({"AL703"}),
        patch=ST,
    ),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_host_side_work_stays_inside_its_limits(
    case: hl.Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.patch.items():
        monkeypatch.setattr(preflight, name, value)
    staged: dict[str, int] = {}
    real = staging.readable_model

    def spy(path: Path, session_root: Path, notes: list[str]) -> Path:
        out = real(path, session_root, notes)
        if out != path:
            staged["apparent"] = sum(e.size_bytes for e in file_digests(out))
            staged["allocated"] = hl.allocated(out)
        return out

    monkeypatch.setattr(staging, "readable_model", spy)
    marker = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    models = tmp_path / "m"
    models.mkdir()
    (tmp_path / "canary.txt").write_text("the host's file, unchanged\n")
    try:
        path = case.build(models, marker)
        before = hl.snapshot(tmp_path)
        free = shutil.disk_usage(tempfile.gettempdir()).free
        sb = runner.Sandbox(path, runner.Policy(load_timeout_s=30, wall_timeout_s=90))
        error: runner.AirlockError | None = None
        try:
            with sb:
                pass
        except runner.AirlockError as e:
            error = e
        report = sb.report()
        # contained, seen from the host
        assert not Path(marker).exists(), "the payload's marker appeared on the host"
        assert hl.snapshot(tmp_path) == before, "host files changed"
        assert hl.containers(sb.session) == []
        assert hl.session_leftovers(sb.session) == [], "a session directory or mount is left"
        assert shutil.disk_usage(tempfile.gettempdir()).free > free - hl.GIB, "the disk filled"
        if case.needs_copy:
            assert staged, "the model was not world-readable: a private copy was expected"
            assert staged["apparent"] > 10 * hl.GIB  # the copy is as long as the original...
            assert staged["allocated"] < 64 << 20, staged  # ...and holds only its data
        _detected_and_complete(case, report, error)
    finally:
        hl.remove_deep(tmp_path)


def _detected_and_complete(
    case: hl.Case, report: runner.Report, error: runner.AirlockError | None
) -> None:
    ids = {f.rule_id for f in report.findings}
    assert report.verdict is not runner.Verdict.CLEAN
    assert case.expect <= ids, (case.name, sorted(ids), [f.evidence for f in report.findings])
    for f in report.findings:
        if f.rule_id in case.expect:
            assert f.severity.rank >= Severity.MEDIUM.rank and f.evidence
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.findings and all(f.evidence for f in report.findings)
    if error is not None:
        assert report.error is not None and report.error.kind == type(error).__name__
        assert report.error.message
    json.loads(report.model_dump_json())  # the whole report serialises


@pytest.mark.timeout(240)
def test_a_hostile_batch_directory_is_discovered_and_evaluated_without_hanging(
    tmp_path: Path,
) -> None:
    """A batch directory with a FIFO named as a model, a symlink loop, a Unix socket and 200
    nested directories: discovery opens none of them and recurses nowhere, and every entry gets
    a result line that is not clean (never a hang, never a silent skip)."""
    from runner.batch.evaluation import evaluate

    marker = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    batch = tmp_path / "batch"
    batch.mkdir()
    os.mkfifo(batch / "weights.pt")
    os.symlink("loop.pkl", batch / "loop.pkl")
    hl.fifo_config_and_socket(batch, marker)  # a model directory: evaluated whole
    fd = os.open(batch, os.O_RDONLY)
    for _ in range(200):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    before = hl.snapshot(tmp_path)
    try:
        results = list(evaluate([batch], jobs=1, policy=runner.Policy(load_timeout_s=30)))
        assert not Path(marker).exists()
        assert hl.snapshot(tmp_path) == before
        names = sorted(Path(r.path).name for r in results)
        assert names == ["d", "loop.pkl", "repo", "weights.pt"], names
        assert all(r.verdict is not runner.Verdict.CLEAN for r in results), results
        by_name = {Path(r.path).name: r for r in results}
        assert "AL704" in by_name["weights.pt"].top_findings  # the FIFO, named as a model
        assert by_name["repo"].verdict is runner.Verdict.MALICIOUS  # its payload, contained
        assert by_name["loop.pkl"].error  # a symlink loop: its line says why
    finally:
        hl.remove_deep(tmp_path)
