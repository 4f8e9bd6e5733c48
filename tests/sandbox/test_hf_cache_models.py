"""Hugging Face repositories as a team's cache holds them (snapshots of symlinks into blobs/),
with a real engine: a snapshot loads with transformers in the sandbox and gives the outputs the
same repository gives in-process; `run ORG/NAME --text` resolves from $HF_HUB_CACHE; `eval` over
a cache root with several repositories and revisions evaluates each and names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner import Sandbox
from tests import hf_repos
from tests.unit.test_hf_cache import REV, REV2, make_repo

TEXTS = ["hello how are you", "what a wonderful film"]


def _files(repo: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in repo.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A cache root: org/cls at two revisions (main is the second), org/enc at one."""
    tmp = tmp_path_factory.mktemp("hfcache")
    cls_a = hf_repos.classifier(tmp / "cls-a", seed=3)
    cls_b = hf_repos.classifier(tmp / "cls-b", seed=4)
    enc = hf_repos.encoder(tmp / "enc", seed=5)
    hub = tmp / "hub"
    hub.mkdir()
    make_repo(hub, "org/cls", _files(cls_a), rev=REV, ref=None)
    make_repo(hub, "org/cls", _files(cls_b), rev=REV2, ref="main")
    make_repo(hub, "org/enc", _files(enc), rev=REV, ref="main")
    for p in [tmp, *tmp.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    return hub, cls_a, cls_b


def _in_process_logits(repo: Path) -> np.ndarray:
    import torch
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(repo)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(repo))
    with torch.no_grad():
        return model(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()


def test_a_snapshot_of_symlinks_loads_like_the_repository(hub: tuple[Path, Path, Path]) -> None:
    root, cls_a, _ = hub
    snap = root / "models--org--cls" / "snapshots" / REV
    assert all(p.is_symlink() for p in snap.iterdir())
    with Sandbox(snap) as sb:
        result = sb.infer_text(TEXTS)
    report = sb.report()
    assert report.verdict.value == "clean", report.findings
    assert report.model.huggingface is not None
    assert (report.model.huggingface.repo_id, report.model.huggingface.revision) == ("org/cls", REV)
    np.testing.assert_allclose(result.outputs["logits"], _in_process_logits(cls_a), atol=1e-5)


def _airlock(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_run_a_repo_id_with_text(hub: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, _, cls_b = hub
    proc = _airlock(
        "run", "org/cls", *[a for t in TEXTS for a in ("--text", t)],
        "--output-dir", str(tmp_path), cache=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" -> ") == 2
    # refs/main names the second revision: its weights answered
    np.testing.assert_allclose(
        np.load(tmp_path / "logits.npy"), _in_process_logits(cls_b), atol=1e-5
    )


def test_eval_a_cache_root_names_each_repository_and_revision(
    hub: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, _, _ = hub
    proc = _airlock("eval", str(root), "--out", str(tmp_path / "out"), "--jobs", "1", cache=root)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    seen = sorted((r["repo_id"], r["revision"], r["verdict"]) for r in lines)
    assert seen == [
        ("org/cls", REV, "clean"),
        ("org/cls", REV2, "clean"),
        ("org/enc", REV, "clean"),
    ]
    assert all(r["format"] == "huggingface" for r in lines)
