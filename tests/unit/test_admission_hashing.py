"""The manifest hashed in a thread while the container starts: the digests are in the record
once the static read is finished (before the model's bytes reach the worker), and a required
signature still has them before anything runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from runner.controller.admission import Admission
from runner.errors import IntegrityError, UsageError
from runner.policy import Policy
from runner.report import ModelInfo
from runner.rules.analysis import Collected
from runner.static import preflight


def _collected(path: Path) -> Collected:
    return Collected(
        policy=Policy(),
        model=ModelInfo(path=str(path), format="unknown", detected_by="", size_bytes=0, files=[]),
    )


def _model(tmp_path: Path) -> Path:
    f = tmp_path / "x.npy"
    np.save(f, np.arange(1 << 18, dtype=np.float32))  # 1 MiB
    return f


def test_digests_join_the_record_when_the_read_finishes(tmp_path: Path) -> None:
    f = _model(tmp_path)
    c = _collected(f)
    a = Admission(f, "auto", preflight.SigningOptions(), c)
    a.start()
    assert c.model.format == "numpy"  # known at once, for the image choice
    a.finish()
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert [d.sha256 for d in c.model.files] == [want]
    assert c.model.size_bytes == f.stat().st_size
    assert c.model.root_digest == hashlib.sha256(bytes.fromhex(want)).hexdigest()
    a.finish()  # twice is harmless
    assert [d.sha256 for d in c.model.files] == [want]


def test_a_required_signature_is_checked_before_start_returns(tmp_path: Path) -> None:
    f = _model(tmp_path)
    c = _collected(f)
    a = Admission(f, "auto", preflight.SigningOptions(require=True), c)
    with pytest.raises(IntegrityError, match="signature is required"):
        a.start()
    assert a.hashing is None and len(c.model.files) == 1  # hashed in line, not in the background


def test_a_file_gone_before_it_is_hashed_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _model(tmp_path)
    c = _collected(f)
    from runner.controller import admission

    def unreadable(path: Path) -> list[object]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(admission, "file_digests", unreadable)
    a = Admission(f, "auto", preflight.SigningOptions(), c)
    a.start()
    with pytest.raises(UsageError, match="cannot be read"):
        a.finish()
