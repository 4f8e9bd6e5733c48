"""A model's outcome as a file on the results volume: written atomically by the in-pod
controller, read (bounded, validated) by the driver. Never logs or termination messages.

Format version 2: the outcome's fields and `assumed_exit`, the sandbox container's exit code the
controller assumed from the tracer's exit record of the worker (None when the log had none),
which the driver confirms from the kubelet (runner.backends.kubernetes.exit_state). A file of
another version is not an outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.backends.base import Outcome
from runner.batch.evaluation import EvalResult

VERSION = 2


class AssumedExit(BaseModel):
    """What the in-pod controller assumed of the sandbox container's exit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exit_code: int = Field(ge=0, le=255, description="the worker's code, or 128 + its signal")


class OutcomeFile(BaseModel):
    """What the file holds: runner.backends.base.Outcome's fields, and the assumed exit."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[2]
    result: EvalResult
    stem: str = Field(max_length=512)
    report_json: str | None = None
    bom_json: str | None = None
    assumed_exit: AssumedExit | None = None

    def outcome(self) -> Outcome:
        return Outcome(self.result, self.stem, self.report_json, self.bom_json)

    @property
    def assumed_code(self) -> int | None:
        return self.assumed_exit.exit_code if self.assumed_exit else None


def dumps(outcome: Outcome, assumed_exit: int | None = None) -> bytes:
    return (
        OutcomeFile(
            version=VERSION,
            result=outcome.result,
            stem=outcome.stem,
            report_json=outcome.report_json,
            bom_json=outcome.bom_json,
            assumed_exit=None if assumed_exit is None else AssumedExit(exit_code=assumed_exit),
        )
        .model_dump_json()
        .encode()
    )


def write_atomic(path: Path, outcome: Outcome, assumed_exit: int | None = None) -> None:
    """Write to a temporary name in the same directory, flush it to disk, rename: the driver
    sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(dumps(outcome, assumed_exit))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_file(path: Path, max_bytes: int) -> OutcomeFile:
    """The file in `path`: an OSError when it cannot be read, a ValueError when it is too big
    or not an outcome (of this version)."""
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"the outcome file is larger than {max_bytes} bytes")
    try:
        return OutcomeFile.model_validate(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the outcome file is not JSON: {e}") from e


def read(path: Path, max_bytes: int) -> Outcome:
    """The outcome in `path` (read_file's errors)."""
    return read_file(path, max_bytes).outcome()
