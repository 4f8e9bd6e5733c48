"""The host's own work on a model stays inside its limits (no Docker): the walk of the tree,
the manifest, staging, discovery, the signing path checks and the static read's time bound.

Every test that could hang on a FIFO runs under a timeout, so a regression fails, not stalls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.batch import discovery
from runner.controller import staging
from runner.errors import UsageError
from runner.integrity.bundle import model_problem
from runner.report import anomalies, file_digests
from runner.rules.catalog import Severity
from runner.rules.evaluation import HostFacts, evaluate
from runner.static import preflight
from runner.static.tamper import TamperKind
from runner.static.walking import tree_tamper
from runner.worker.shared import formats, tree
from tests.hostile import soundness_host_limits as hl
from tests.unit.test_fuzz_formats import Counting, _eocd

pytestmark = pytest.mark.timeout(120)
GIB = 1 << 30


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    m = hl.nested_5000(tmp_path, "/tmp/never")
    yield m
    hl.remove_deep(m)


# --- the walk ------------------------------------------------------------------------------------


def test_a_5000_deep_tree_is_walked_without_recursion_and_reported(deep: Path) -> None:
    walked = tree.scan(deep)
    assert walked.too_deep and not walked.complete
    # the directories down to the bound are walked; the next one is listed, not entered
    assert len([e for e in walked.entries if e.kind is tree.Kind.DIR]) == tree.MAX_DEPTH + 1
    kinds = {t.check for t in tree_tamper(deep)}
    assert kinds == {TamperKind.WALK_LIMIT}
    assert preflight.time_bound(deep) < preflight.TIME_BASE_S + 1  # no RecursionError
    assert [d.path for d in file_digests(deep)] == ["config.json", "weights.pkl"]
    assert model_problem(deep).startswith("model's tree is beyond the walk's bounds: 1 directory")


def test_specials_loops_and_the_entry_bound(tmp_path: Path) -> None:
    m = hl.fifo_config_and_socket(tmp_path, "/tmp/never")
    os.symlink("loop", m / "loop")
    os.symlink("..", m / "tokenizer" / "up")
    walked = tree.scan(m)
    assert {e.rel: e.kind for e in walked.special} == {
        "model.sock": tree.Kind.SOCKET,
        "tokenizer/tokenizer_config.json": tree.Kind.FIFO,
    }
    assert sorted(r for r, _ in walked.loops) == ["loop", "tokenizer/up"]
    assert tree.scan(m, max_entries=3).truncated
    found = tree.problems(tree.scan(m, max_entries=3))
    assert found["limit"] == ["the walk stopped at 3 entries; the rest was not examined"]


def test_evidence_lines_are_cut_and_counted(tmp_path: Path) -> None:
    for i in range(25):
        os.mkfifo(tmp_path / f"p{i:02d}")
    lines = tree.problems(tree.scan(tmp_path))["special"]
    assert len(lines) == 10 and lines[-1] == "... and 16 more"


def test_walk_findings_are_medium_rules_of_their_own() -> None:
    facts = HostFacts(tamper=tuple((k, "x") for k in preflight_kinds()))
    found = {f.rule_id: f.severity for f in evaluate([], facts)}
    assert found == dict.fromkeys(["AL704", "AL705", "AL706", "AL707", "AL708"], Severity.MEDIUM)


def preflight_kinds() -> list[TamperKind]:
    return [
        TamperKind.SPECIAL_FILE,
        TamperKind.SYMLINK_LOOP,
        TamperKind.WALK_LIMIT,
        TamperKind.SPARSE_FILE,
        TamperKind.DETECT_LIMIT,
    ]


# --- the manifest: never a FIFO opened, a sparse file hashed by its data --------------------------


def test_the_manifest_opens_no_fifo_and_hashes_sparse_files_by_their_data(tmp_path: Path) -> None:
    m = hl.fifo_as_shard(tmp_path, "/tmp/never")
    assert [d.path for d in file_digests(m)] == ["config.json", "weights.pkl"]
    assert "pytorch_model-00002.bin: a FIFO" in anomalies(m)
    big = m / "holes.bin"
    with big.open("wb") as f:
        f.write(b"head")
        f.truncate(40 * GIB)  # hashing its bytes would read 40 GiB
    (entry,) = [d for d in file_digests(m) if d.path == "holes.bin"]
    assert entry.sparse and entry.size_bytes == 40 * GIB
    with big.open("r+b") as f:
        f.write(b"HEAD")
    (changed,) = [d for d in file_digests(m) if d.path == "holes.bin"]
    assert changed.sha256 != entry.sha256  # the data is in the digest
    assert not any(d.sparse for d in file_digests(m) if d.path != "holes.bin")


# --- staging: bounded, sparse, never following a link --------------------------------------------


def test_a_private_copy_keeps_a_sparse_file_sparse(tmp_path: Path) -> None:
    p = hl.sparse_50g(tmp_path, "/tmp/never")
    session = tmp_path / "session"
    session.mkdir()
    notes: list[str] = []
    staged = staging.readable_model(p, session, notes)
    assert staged != p and staged.stat().st_size == p.stat().st_size
    assert staged.stat().st_blocks * 512 < 16 << 20  # 50 GB long, a few KiB on disk
    with staged.open("rb") as f, p.open("rb") as g:
        assert f.read(4096) == g.read(4096)
    assert oct(staged.stat().st_mode & 0o777) == "0o644"
    assert any("sparse" in n for n in notes)


def test_a_copy_past_what_the_disk_can_spare_is_a_usage_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = hl.sparse_shard_in_private_dir(tmp_path, "/tmp/never")
    (m / "dense.bin").write_bytes(os.urandom(3 << 20))
    (m / "dense.bin").chmod(0o600)
    monkeypatch.setattr(staging, "RESERVE_BYTES", 0)
    monkeypatch.setattr(staging, "RESERVE_FRACTION", 0.0)
    real = os.statvfs

    def small_disk(p: object) -> os.statvfs_result:
        st = real(p)  # type: ignore[arg-type]
        fields = list(st)
        fields[4] = (2 << 20) // st.f_frsize  # f_bavail: 2 MiB to spare
        return os.statvfs_result(fields)

    monkeypatch.setattr(staging.os, "statvfs", small_disk)
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(UsageError, match="not readable by the sandbox's uid") as e:
        staging.stage(m, into)
    assert "world-readable" in e.value.hint and "\n" not in e.value.diagnostics()
    assert list(into.iterdir()) == []


def test_a_copy_never_follows_a_symlink_nor_opens_a_fifo(tmp_path: Path) -> None:
    m = hl.fifo_as_shard(tmp_path, "/tmp/never")
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret\n")
    os.symlink(secret, m / "link.bin")
    os.symlink("loop", m / "loop")
    m.chmod(0o700)
    into = tmp_path / "into"
    into.mkdir()
    staged = staging.stage(m, into)
    assert os.readlink(staged / "link.bin") == str(secret)  # a symlink, as it was
    assert (staged / "loop").is_symlink()
    assert not (staged / "pytorch_model-00002.bin").exists()  # the FIFO is left out
    assert (staged / "weights.pkl").read_bytes() == (m / "weights.pkl").read_bytes()


# --- discovery ------------------------------------------------------------------------------------


def test_discovery_keeps_what_it_cannot_open_and_never_hangs(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    hl.fifo_as_shard(batch, "/tmp/never")  # a model directory: kept whole
    os.mkfifo(batch / "weights.txt")  # a FIFO that looks like a list
    os.mkfifo(batch / "model.bin")
    os.symlink("self", batch / "self")
    (batch / "ok.pkl").write_bytes(b"\x80\x04N.")
    names = sorted(p.name for p in discovery.expand([batch]))
    assert names == ["model.bin", "ok.pkl", "repo", "self", "weights.txt"]
    assert [p.name for p in discovery.expand([batch / "model.bin"])] == ["model.bin"]


def test_discovery_of_a_5000_deep_batch_and_a_list_that_names_itself(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(200):
        os.mkdir("x", dir_fd=fd)
        nfd = os.open("x", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    found = discovery.expand([top])
    assert len(found) == 1 and len(found[0].relative_to(top).parts) == tree.MAX_DEPTH + 1
    listing = tmp_path / "list.txt"
    listing.write_text(f"{listing}\n")
    with pytest.raises(UsageError, match="names itself"):
        discovery.expand([listing])
    hl.remove_deep(top)


# --- the static read's time bound -----------------------------------------------------------------


def test_a_static_read_that_finishes_after_its_bound_is_a_timeout(tmp_path: Path) -> None:
    """The caller asks only once the child has exited: the late result is still refused."""
    p = hl.opcode_flood(tmp_path, "/tmp/never")
    pending = preflight.Pending(p, timeout_s=0.3)
    pending._proc.wait(timeout=100)  # the child is done (finished late, or killed at its bound)
    result = pending.result()
    assert "time bound" in result.aborted
    assert result.format == "pickle" and not result.imports


def test_a_result_the_clock_says_is_late_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "small.pkl"
    p.write_bytes(b"\x80\x04N.")
    assert not preflight.Pending(p, timeout_s=60).result().aborted  # on time: accepted
    ticks = iter([0.0, 0.0, 1000.0])  # started, waited, done: 1000 s later by the host's clock
    monkeypatch.setattr(preflight, "_clock", lambda: next(ticks, 1000.0))
    result = preflight.Pending(p, timeout_s=60).result()
    assert "time bound" in result.aborted


def test_the_bound_holds_when_the_caller_never_asks(tmp_path: Path) -> None:
    p = hl.opcode_flood(tmp_path, "/tmp/never")
    pending = preflight.Pending(p, timeout_s=0.3)
    deadline = time.monotonic() + 100
    while pending._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending._proc.returncode is not None and pending._proc.returncode < 0  # killed
    assert "time bound" in pending.result().aborted


def test_the_child_reports_walk_findings_as_json(tmp_path: Path) -> None:
    m = hl.directory_cycle(tmp_path, "/tmp/never")
    out = subprocess.run(
        [sys.executable, "-m", "runner.static.preflight", str(m)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=100,
    ).stdout
    assert '"symlink-loop"' in out


# --- detection of many files shares one bound ---------------------------------------------------


def _claiming_zips(d: Path, n: int) -> None:
    """`n` sparse files whose end record claims a 12 MiB central directory (each read alone
    stays under detection's per-file bound; together they would not)."""
    size = 13 << 20
    for i in range(n):
        with (d / f"m{i}.pt").open("wb") as f:
            f.write(b"PK\x03\x04")
            f.truncate(size - 22)
            f.seek(size - 22)
            f.write(_eocd(12 << 20, size - 22 - (12 << 20), 1))


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    log: list[int] = []
    real = formats._open
    monkeypatch.setattr(formats, "_open", lambda p, follow: Counting(real(p, follow), log))
    return log


def test_anomalies_and_discovery_share_one_read_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _claiming_zips(tmp_path, 8)  # 96 MiB of central directories in all
    log = _counted(monkeypatch)
    found = anomalies(tmp_path)
    assert sum(log) <= formats.DIR_READ_LIMIT
    assert any("not identified (detection's read bound)" in a for a in found), found
    log.clear()
    monkeypatch.setattr(discovery, "BATCH_READ_LIMIT", formats.DIR_READ_LIMIT)
    models = discovery.expand([tmp_path])
    assert sum(log) <= formats.DIR_READ_LIMIT
    assert len(models) == 8  # past the bound, each is kept by its claim (zip magic)
