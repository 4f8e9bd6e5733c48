"""Batch discovery over Hugging Face caches (no Docker): a cache root, $HF_HOME, a repository
folder, a snapshot and a repo id each give every repository at every snapshot, the blobs are
never models of their own, and every file passed over is named with why. Ordinary repository
files are not anomalies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from examples.make_examples import tiny_onnx
from runner.batch import discovery, evaluation
from runner.batch import results as batch_results
from runner.controller import sessions
from runner.report import anomalies
from runner.rules.catalog import Verdict
from tests.unit.test_hf_cache import REV, REV2, make_repo


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home" / "hub"
    root.mkdir(parents=True)
    for var in ("HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(root.parent))
    base = tmp_path / "tmpbase"
    base.mkdir()
    monkeypatch.setattr(sessions, "tmp_base", lambda: base)
    onnx = tiny_onnx()
    make_repo(root, "org/a", {"config.json": b"{}", "model.onnx": onnx}, rev=REV)
    make_repo(root, "org/a", {"config.json": b"{}", "model.onnx": onnx + b""}, rev=REV2, ref=None)
    make_repo(root, "gpt2", {"model.onnx": onnx, "README.md": b"# hi"})  # no config.json
    return root


def _snaps(found: list[Path]) -> list[tuple[str, str]]:
    return [(p.parent.parent.name, p.name) for p in found]


EXPECTED = [("models--gpt2", REV), ("models--org--a", REV), ("models--org--a", REV2)]


def test_a_cache_root_hf_home_and_a_repo_folder(hub: Path) -> None:
    assert _snaps(discovery.expand([hub])) == EXPECTED
    assert _snaps(discovery.expand([hub.parent])) == EXPECTED  # $HF_HOME
    assert _snaps(discovery.expand([hub / "models--org--a"])) == EXPECTED[1:]
    snap = hub / "models--org--a" / "snapshots" / REV2
    assert discovery.expand([snap]) == [snap]
    assert _snaps(discovery.expand(["org/a"])) == [("models--org--a", REV)]  # refs/main
    assert _snaps(discovery.expand([f"org/a@{REV2[:8]}"])) == [("models--org--a", REV2)]


def test_a_cache_inside_a_walked_directory_is_read_as_a_cache(hub: Path, tmp_path: Path) -> None:
    found = discovery.discover([tmp_path / "home"])
    assert _snaps(found.paths) == EXPECTED  # the blobs are not models of their own
    assert not any("blobs" in str(p) for p in found.paths)


def test_every_file_passed_over_is_named_with_why(tmp_path: Path) -> None:
    d = tmp_path / "models"
    d.mkdir()
    (d / "tiny.onnx").write_bytes(tiny_onnx())
    (d / "notes.txt").write_text("hello")
    (d / "data.bin2").write_bytes(b"\x00" * 64)
    (d / ".hidden").write_text("x")
    (d / "link.onnx").symlink_to(d / "tiny.onnx")
    found = discovery.discover([d])
    assert [p.name for p in found.paths] == ["tiny.onnx"]
    why = {Path(p).name: w for p, w in found.skipped}
    assert set(why) == {"notes.txt", "data.bin2", ".hidden", "link.onnx"}
    assert "configuration or text" in why["notes.txt"]
    assert "not a model" in why["data.bin2"]
    assert "hidden" in why[".hidden"]
    assert "symlink" in why["link.onnx"]


def test_the_skipped_list_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "MAX_SKIPPED", 3)
    for i in range(5):
        (tmp_path / f"n{i}.txt").write_text("x")
    found = discovery.discover([tmp_path])
    assert len(found.skipped) == 3 and found.more_skipped == 2


def test_a_snapshot_digest_is_its_content_and_leaves_nothing(hub: Path) -> None:
    a = hub / "models--org--a" / "snapshots"
    d1, d2 = discovery.digest(a / REV), discovery.digest(a / REV2)
    assert d1 and d1 == d2  # the same files: the same digest, whatever the revision
    assert discovery.digest(hub / "models--gpt2" / "snapshots" / REV) not in ("", d1)
    assert list(sessions.tmp_base().iterdir()) == []


def test_results_and_summary_name_the_repository() -> None:
    r = evaluation.EvalResult(
        path="/c/models--org--a/snapshots/" + REV,
        repo_id="org/a",
        revision=REV,
        sha256="0" * 64,
        format="onnx",
        verdict=Verdict.SUSPICIOUS,
        findings={"medium": 1},
        top_findings=["AL701"],
        probed=False,
        seconds=1.0,
    )
    s = batch_results.summary([r])
    assert s["worst"][0].get("repo") == f"org/a@{REV}"
    assert s["slowest"][0].get("repo") == f"org/a@{REV}"
    plain = r.model_copy(update={"repo_id": None, "revision": None})
    assert "repo" not in batch_results.summary([plain])["worst"][0]


def test_ordinary_repository_files_are_not_anomalies(tmp_path: Path) -> None:
    d = tmp_path / "repo"
    d.mkdir()
    (d / "model.onnx").write_bytes(tiny_onnx())
    for name, data in {
        ".gitattributes": b"*.onnx filter=lfs diff=lfs merge=lfs -text\n",
        ".gitignore": b"*.pyc\n",
        "LICENSE": b"MIT License\n",
        "README.md": b"# card\n",
        "NOTICE.txt": b"n\n",
        "vocab.txt": b"[PAD]\n",
        "tokenizer.json": b"{}",
        "spiece.model": b"\x0a\x01x",
        "card.png": b"\x89PNG\r\n",
        ".gitkeep": b"",
    }.items():
        (d / name).write_bytes(data)
    assert anomalies(d) == []
    # what matters is still flagged
    (d / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(d / "run.sh", 0o755)
    (d / "modeling.py").write_text("x = 1\n")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref\n")
    (d / "escape").symlink_to("/etc/passwd")
    (d / "blob.weird").write_bytes(b"\x01\x02\x03" * 10)
    (d / "LICENSE.sh").write_text("#!/bin/sh\n")
    os.chmod(d / "LICENSE.sh", 0o755)
    found = "\n".join(anomalies(d))
    for expected in (
        "run.sh: executable",
        "modeling.py: Python code",
        ".git/HEAD: git content",
        "escape: a symlink",
        "blob.weird: an unknown file",
        "LICENSE.sh: executable",
    ):
        assert expected in found
