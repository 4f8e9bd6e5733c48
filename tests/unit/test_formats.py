"""Format detection reads bytes only, and decides by content, not by extension."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from runner.worker.shared.formats import Format, FormatError, detect
from tests.fixtures import models


def test_onnx(tmp_path: Path) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    assert detect(built.path).format is Format.ONNX


def test_torchscript_and_torch_save(tmp_path: Path) -> None:
    x = models.sample_input()
    assert detect(models.torchscript_model(tmp_path, x).path).format is Format.TORCHSCRIPT
    assert detect(models.full_module_pickle(tmp_path, x).path).format is Format.TORCH
    assert detect(models.state_dict_checkpoint(tmp_path)).format is Format.TORCH


def test_safetensors(tmp_path: Path) -> None:
    built = models.safetensors_model(tmp_path, models.sample_input())
    assert detect(built.path).format is Format.SAFETENSORS


def test_content_wins_over_extension(tmp_path: Path) -> None:
    disguised = tmp_path / "model.onnx"
    disguised.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert detect(disguised).format is Format.PICKLE


def test_protocol_0_pickle_needs_a_pickle_extension(tmp_path: Path) -> None:
    p = tmp_path / "old.pkl"
    p.write_bytes(pickle.dumps([1, 2], protocol=0))
    assert detect(p).format is Format.PICKLE


def test_legacy_torch_stream(tmp_path: Path) -> None:
    import torch

    p = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, p, _use_new_zipfile_serialization=False)
    assert detect(p).format is Format.TORCH


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"hello world, not a model", "not a recognised model"),
        (struct.pack("<Q", 10**12) + b'{"x": 1}', "header length"),
    ],
)
def test_rejects(tmp_path: Path, data: bytes, needle: str) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    with pytest.raises(FormatError, match=needle):
        detect(p)


def test_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "x.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(FormatError, match="none of a torch checkpoint"):
        detect(p)


def test_directory_picks_the_weights(tmp_path: Path) -> None:
    built = models.safetensors_model(tmp_path, models.sample_input())
    (tmp_path / "config.json").write_text("{}")
    d = detect(tmp_path)
    assert d.format is Format.SAFETENSORS and d.path == built.path
    with pytest.raises(FormatError, match="no model file"):
        empty = tmp_path / "empty"
        empty.mkdir()
        detect(empty)


def test_manifest_root_digest_and_anomalies(tmp_path: Path) -> None:
    import hashlib
    import os

    from runner.report import anomalies, file_digests, root_digest

    built = models.safetensors_model(tmp_path, models.sample_input())
    (tmp_path / "config.json").write_text("{}")
    digests = file_digests(tmp_path)
    expected = hashlib.sha256(
        b"".join(bytes.fromhex(d.sha256) for d in sorted(digests, key=lambda d: d.path))
    ).hexdigest()
    assert root_digest(digests) == expected
    single = file_digests(built.path)
    assert root_digest(single) == hashlib.sha256(bytes.fromhex(single[0].sha256)).hexdigest()
    assert anomalies(tmp_path) == ["arch.py: Python code"]
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "run.sh", 0o755)
    os.symlink("/etc/passwd", tmp_path / "link")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: x\n")
    found = anomalies(tmp_path)
    assert any("git content" in a for a in found)
    assert "empty.bin: an empty file" in found and "run.sh: executable" in found
    assert any(a.startswith("link: a symlink") for a in found)
