"""What a sandbox run produced, as data. Serialised to JSON with a versioned schema."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .policy import Policy

SCHEMA_VERSION = "1.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileDigest(_Model):
    path: str
    size_bytes: int
    sha256: str


class ModelInfo(_Model):
    path: str
    format: str
    detected_by: str
    size_bytes: int
    files: list[FileDigest]


class TensorSpecInfo(_Model):
    name: str
    dtype: str = Field(description="numpy dtype name; empty when unknown")
    shape: list[int] = Field(description="-1 for a dynamic dimension; empty when unknown")


class Signature(_Model):
    format: str
    inputs: list[TensorSpecInfo]
    outputs: list[TensorSpecInfo]
    can_infer: bool
    note: str = ""


class TensorSummary(_Model):
    name: str
    dtype: str
    shape: list[int]
    sha256: str

    @classmethod
    def of(cls, name: str, arr: np.ndarray) -> TensorSummary:
        data = np.ascontiguousarray(arr).tobytes()
        return cls(name=name, dtype=arr.dtype.name, shape=[int(d) for d in arr.shape],
                   sha256=hashlib.sha256(data).hexdigest())


class SandboxInfo(_Model):
    session: str
    container: str
    image: str
    image_id: str
    runtime: str
    policy: Policy


class Phase(_Model):
    name: str
    seconds: float


class ErrorInfo(_Model):
    kind: str
    message: str
    hint: str = ""
    exit_code: int | None = Field(None, description="the worker's exit code, when it died")
    log_tail: str = ""


class RunResult(_Model):
    schema_version: str = SCHEMA_VERSION
    tool_version: str
    model: ModelInfo
    sandbox: SandboxInfo | None
    phases: list[Phase]
    signature: Signature | None
    outputs: list[TensorSummary]
    calls: int
    notes: list[str] = Field(default_factory=list)
    error: ErrorInfo | None

    @property
    def ok(self) -> bool:
        return self.error is None


def file_digests(path: Path) -> list[FileDigest]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    base = path.parent if path.is_file() else path
    out = []
    for f in files:
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out.append(FileDigest(path=str(f.relative_to(base)), size_bytes=f.stat().st_size,
                              sha256=h.hexdigest()))
    return out
