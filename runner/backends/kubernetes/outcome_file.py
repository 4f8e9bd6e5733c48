"""A model's outcome as a file on the results volume: written atomically by the in-pod
controller, read (bounded, validated) by the driver. Never logs or termination messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from runner.backends.base import Outcome
from runner.batch.evaluation import EvalResult


class OutcomeFile(BaseModel):
    """What the file holds: runner.backends.base.Outcome's fields."""

    model_config = ConfigDict(extra="forbid")

    result: EvalResult
    stem: str
    report_json: str | None = None
    bom_json: str | None = None


def dumps(outcome: Outcome) -> bytes:
    return (
        OutcomeFile(
            result=outcome.result,
            stem=outcome.stem,
            report_json=outcome.report_json,
            bom_json=outcome.bom_json,
        )
        .model_dump_json()
        .encode()
    )


def write_atomic(path: Path, outcome: Outcome) -> None:
    """Write to a temporary name in the same directory, flush it to disk, rename: the driver
    sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(dumps(outcome))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read(path: Path, max_bytes: int) -> Outcome:
    """The outcome in `path`: an OSError when it cannot be read, a ValueError when it is too
    big or not an outcome."""
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"the outcome file is larger than {max_bytes} bytes")
    try:
        parsed = OutcomeFile.model_validate(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the outcome file is not JSON: {e}") from e
    return Outcome(parsed.result, parsed.stem, parsed.report_json, parsed.bom_json)
