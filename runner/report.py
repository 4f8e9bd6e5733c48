"""The report: what a sandbox run produced, as data. The JSON form is the source of truth; its
schema is kept in runner/data/report.schema.json (a test keeps it in step), and the terminal,
HTML and SARIF views are made from it.

Evidence is labelled by source: `tracer` and `host` evidence Airlock gathered itself; `worker`
evidence is what the worker said about itself, which the model could forge or hide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from runner.integrity.provenance_claims import ProvenanceInfo
from runner.integrity.trust import SignatureCheck
from runner.policy import Policy
from runner.rules import catalog as rules
from runner.rules.catalog import Finding, Verdict
from runner.static.manifest import (
    FileDigest,
    anomalies,
    file_digests,
    root_digest,
    sha256_file,
    shown,
)
from runner.telemetry.events import Event
from runner.telemetry.resources import Resources

SCHEMA_VERSION = "1.0"
__all__ = [
    "FileDigest",
    "Report",
    "anomalies",
    "file_digests",
    "root_digest",
    "sha256_file",
    "shown",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeFile(_Model):
    path: str = Field(description="relative to the repository")
    sha256: str
    imports: list[str] = Field(
        default_factory=list,
        description="modules its import statements name, read from the syntax tree (never run)",
    )
    problem: str = Field(default="", description="why its imports could not be read")


class HfInfo(_Model):
    """What the host read of a Hugging Face repository: bounded, validated JSON only."""

    repo_id: str = Field(default="", description="ORG/NAME, when it came from a cache")
    revision: str = Field(default="", description="the cache snapshot's commit hash")
    model_type: str = ""
    architectures: list[str] = Field(default_factory=list)
    task: str = Field(
        default="",
        description="embedding, classification, causal-lm or hidden-states, from architectures",
    )
    weights: list[str] = Field(default_factory=list, description="weight files, shards included")
    tokenizer: bool = Field(default=False, description="tokenizer files are present")
    remote_code: bool = Field(
        default=False, description="config.json or tokenizer_config.json has an auto_map"
    )
    auto_map: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the file holding an auto_map (config.json, tokenizer_config.json), and the "
        "code files it names",
    )
    code_files: list[CodeFile] = Field(default_factory=list)
    adapter: dict[str, str] = Field(
        default_factory=dict,
        description="a PEFT adapter's peft_type and base_model_name_or_path, when it is one",
    )
    problems: list[str] = Field(
        default_factory=list, description="JSON files that could not be read, and why"
    )
    index_problems: list[str] = Field(
        default_factory=list,
        description="weight-map entries naming a file outside the repository or not in it",
    )


class ModelInfo(_Model):
    path: str
    format: str
    detected_by: str
    size_bytes: int
    files: list[FileDigest]
    root_digest: str = Field(
        default="",
        description="sha256 over the per-file sha256 digests in "
        "path order, as OpenSSF model signing computes it (for a single "
        "file too)",
    )
    anomalies: list[str] = Field(
        default_factory=list,
        description="symlinks, executables, "
        ".py files, .git content, empty and unknown files in a model "
        "directory",
    )
    huggingface: HfInfo | None = None


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
        return cls(
            name=name,
            dtype=arr.dtype.name,
            shape=[int(d) for d in arr.shape],
            sha256=hashlib.sha256(data).hexdigest(),
        )


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


class TracerInfo(_Model):
    enabled: bool
    kind: str = Field(
        default="",
        description="strace (inside the sandbox, under runc) or gvisor (gVisor's trace points, "
        "read on the host, under runsc); empty when tracing was off",
    )
    exit_code: int | None = Field(default=None, description="the tracer's (container's) exit code")
    worker_exit: str = Field(default="", description="the worker's exit record in the log")
    log_bytes: int = 0
    syscalls: int = 0
    malformed_lines: int = 0
    cut_mid_line: bool = False
    truncated: bool = Field(default=False, description="the log was longer than Airlock reads")


class ErrorInfo(_Model):
    kind: str
    message: str
    hint: str = ""
    exit_code: int | None = Field(default=None, description="the worker's exit code, when it died")
    log_tail: str = ""


class StaticInfo(_Model):
    seconds: float
    bounds: str = Field(description="the time and memory bounds the static read ran under")
    aborted: str = Field(default="", description="why it did not finish, when it did not")
    imports: list[str] = Field(
        default_factory=list,
        description="module.name of every "
        "import the pickle(s) would perform, in stream order ('?' "
        "where the name is computed at run time)",
    )


class Integrity(_Model):
    """What was established before the sandbox started: the static read, the signature and
    the declared provenance."""

    static: StaticInfo
    signature: SignatureCheck | None = None
    signature_required: bool = False
    provenance: ProvenanceInfo | None = None


class ModelRef(_Model):
    path: str
    root_digest: str
    verdict: Verdict
    report: str = Field(default="", description="its own report's file, when one was written")


class CategoryDiff(_Model):
    category: str
    rows: int
    flips: int | None = Field(
        default=None,
        description="rows whose top-1 prediction differs from "
        "the base model's (classifier-like outputs)",
    )
    flip_rate: float | None = None
    flips_to: dict[str, int] = Field(
        default_factory=dict,
        description="the candidate's class for the flipped rows, most frequent first",
    )
    control_flips: int | None = None
    control_rows: int | None = None
    control_rate: float | None = None
    p_value: float | None = Field(
        default=None, description="one-sided exact test of the flip count against the control"
    )
    p_adjusted: float | None = Field(
        default=None, description="Benjamini-Hochberg across categories"
    )
    js_mean: float | None = Field(default=None, description="mean Jensen-Shannon divergence (bits)")
    js_low: float | None = Field(default=None, description="bootstrap 95% interval, lower end")
    js_high: float | None = None
    kl_mean: float | None = Field(default=None, description="mean KL(base || candidate) (bits)")
    kl_low: float | None = Field(default=None, description="bootstrap 95% interval, lower end")
    kl_high: float | None = None
    max_abs_diff: float
    base_accuracy: float | None = None
    candidate_accuracy: float | None = None
    mcnemar_p: float | None = Field(
        default=None, description="exact McNemar test of the change in accuracy"
    )
    target_base: int | None = Field(
        default=None, description="the base's generations that contain the --target string"
    )
    target_candidate: int | None = Field(
        default=None, description="the candidate's generations that contain the --target string"
    )
    target_rate_base: float | None = None
    target_rate_candidate: float | None = None
    target_gained: int | None = Field(
        default=None, description="rows where the candidate's contains it and the base's not"
    )
    target_control_rate: float | None = Field(
        default=None, description="the control's rate of such rows"
    )
    target_p_value: float | None = Field(
        default=None, description="one-sided exact test of target_gained against the control"
    )
    target_p_adjusted: float | None = Field(
        default=None, description="Benjamini-Hochberg across categories"
    )
    flagged: bool = False


class BehaviorDiff(_Model):
    base: ModelRef
    control: ModelRef | None = None
    control_kind: Literal["model", "rerun", "pooled", "category"] = Field(
        description="category: the probe category named 'control'"
    )
    probes: str
    probes_digest: str
    rows: int
    output: str = Field(description="the output compared")
    kind: Literal["classifier", "regression", "causal-lm"]
    alpha: float
    min_effect: float = Field(description="the flip rate must exceed the control's by this")
    categories: list[CategoryDiff]
    flagged: list[str]
    target: str | None = Field(
        default=None, description="the string looked for in generations (causal LMs)"
    )
    generate_tokens: int | None = Field(default=None, description="tokens generated a probe")


class CategoryDrift(_Model):
    category: str
    rows: int
    changed: int = Field(description="rows whose outputs differ from the baseline")
    flips: int | None = None
    flip_rate: float | None = None
    max_abs_diff: float | None = None
    flagged: bool = False


class BaselineCheck(_Model):
    registry: str
    name: str
    recorded_at: str
    recorded_root_digest: str
    recorded_image_id: str
    recorded_runtime: str
    same_environment: bool = Field(description="same image and runtime: identical outputs expected")
    model_changed: bool = Field(description="the model's root digest differs from the one recorded")
    rows: int
    rows_changed: int
    tolerance: float
    categories: list[CategoryDrift]
    drift: bool


class Report(_Model):
    schema_version: str = SCHEMA_VERSION
    tool_version: str
    verdict: Verdict
    findings: list[Finding]
    model: ModelInfo
    sandbox: SandboxInfo | None
    resources: Resources | None
    events: list[Event]
    events_dropped: int = 0
    tracer: TracerInfo | None = None
    phases: list[Phase]
    signature: Signature | None
    outputs: list[TensorSummary]
    calls: int
    notes: list[str] = Field(default_factory=list)
    error: ErrorInfo | None
    integrity: Integrity | None = Field(
        default=None, description="the static pre-flight, signature and provenance"
    )
    behavior: BehaviorDiff | None = Field(default=None, description="the diff against a base model")
    baseline: BaselineCheck | None = Field(
        default=None, description="the check against a recorded behavioural baseline"
    )

    @property
    def ok(self) -> bool:
        return self.error is None

    def amended(
        self, findings: Iterable[Finding] = (), notes: Iterable[str] = (), **fields: Any
    ) -> Report:
        """This report with more findings, notes or sections, and its verdict judged again."""
        found = rules.ordered([*self.findings, *findings])
        could_not = self.error is not None or self.verdict is Verdict.ERROR
        return self.model_copy(
            update={
                "findings": found,
                "notes": [*self.notes, *notes],
                "verdict": rules.verdict(found, could_not),
                **fields,
            }
        )

    def worst_severity(self) -> str | None:
        return (
            max(self.findings, key=lambda f: f.severity.rank).severity.value
            if self.findings
            else None
        )
