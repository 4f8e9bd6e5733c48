"""The summary shows a single file's own sha256 (what publishers print), and the root digest
labelled as what it is (OpenSSF model signing's digest over each file's sha256)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from runner.controller.admission import Admission
from runner.policy import Policy
from runner.report import ModelInfo
from runner.rules import analysis
from runner.rules.analysis import Collected
from runner.static import preflight
from runner.views.terminal import render_text


def _summary(path: Path) -> str:
    c = Collected(
        policy=Policy(),
        model=ModelInfo(path=str(path), format="unknown", detected_by="", size_bytes=0, files=[]),
    )
    a = Admission(path, "auto", preflight.SigningOptions(), c)
    a.start()
    a.finish()
    c.static_only = True
    return render_text(analysis.build(c), width=200)


def test_a_single_file_shows_its_own_sha256(tmp_path: Path) -> None:
    f = tmp_path / "w.safetensors"
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    f.write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    text = _summary(f)
    own = hashlib.sha256(f.read_bytes()).hexdigest()
    assert any(ln.split() == ["sha256", own] for ln in text.splitlines())
    root_line = next(line for line in text.splitlines() if line.startswith("root digest"))
    assert own not in root_line and "OpenSSF model signing" in root_line


def test_a_directory_shows_its_root_digest_labelled(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
        (d / name).write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    text = _summary(d)
    assert "2 files" in text
    assert not any(line.startswith("sha256 ") for line in text.splitlines())
    assert any(line.startswith("root digest") for line in text.splitlines())
