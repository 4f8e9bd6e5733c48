"""Batch discovery of every format (no Docker): each file is a model by its content or is named
with why it is not evaluated; a model directory's files of other formats are named too, and a
SavedModel directory is one model."""

from __future__ import annotations

import struct
from pathlib import Path

from runner.batch import discovery


def _write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_each_format_is_found_by_content_and_the_rest_is_named(tmp_path: Path) -> None:
    models = [
        _write(tmp_path / "llm.weights", b"GGUF" + struct.pack("<I", 3) + bytes(64)),
        _write(tmp_path / "wake.model", bytes(4) + b"TFL3" + bytes(64)),
        _write(tmp_path / "legacy.h5", b"\x89HDF\r\n\x1a\n" + bytes(64)),
        _write(tmp_path / "arr.npy", b"\x93NUMPY\x01\x00" + bytes(64)),
        _write(tmp_path / "sm" / "saved_model.pb", b"\x08\x01" + bytes(8)),
    ]
    _write(tmp_path / "sm" / "variables" / "variables.index", bytes(16))
    notes = _write(tmp_path / "notes.txt", b"not a model, not a list\0")
    junk = _write(tmp_path / "blob.dat", b"\x01\x02 nothing a reader knows")
    found = discovery.discover([tmp_path])
    assert sorted(found.paths) == sorted([*models[:4], tmp_path / "sm"])
    skipped = dict(found.skipped)
    assert "configuration or text file" in skipped[str(notes)]
    assert "not a model (by its content)" in skipped[str(junk)]


def test_a_repository_names_the_weights_its_load_leaves_out(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write(repo / "config.json", b"{}")
    _write(repo / "model.safetensors", struct.pack("<Q", 2) + b"{}")
    _write(repo / "pytorch_model.bin", b"\x80\x02}q\x00.")
    gguf = _write(repo / "gguf" / "model-q4.gguf", b"GGUF" + bytes(60))
    args = _write(repo / "training_args.bin", b"\x80\x04N.")
    onnx = _write(repo / "onnx" / "model.onnx", b"\x08\x07")
    found = discovery.discover([tmp_path])
    assert found.paths == [repo]
    skipped = dict(found.skipped)
    for left_out in (gguf, args, onnx):
        assert "not part of that load" in skipped[str(left_out)], left_out
    assert str(repo / "pytorch_model.bin") not in skipped
    assert str(repo / "model.safetensors") not in skipped
