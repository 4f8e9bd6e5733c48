"""Admission: what a model must pass on the host before a sandbox starts for it.

The request is checked (the path, the architecture file, a forced format); the bounded static
read starts in its child process and runs while the container starts; the manifest is hashed,
the signature checked against the trust policy and the provenance claims read. A required
signature that is missing or does not verify stops the run before anything executes. The host
only reads bytes here: nothing of the model is deserialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import IntegrityError, UsageError
from runner.hf.repo import describe_repo, require_trust
from runner.integrity.provenance_claims import ProvenanceInfo, provenance_for
from runner.integrity.trust import SignatureCheck
from runner.report import (
    HfInfo,
    Integrity,
    ModelInfo,
    StaticInfo,
    anomalies,
    file_digests,
    root_digest,
    shown,
)
from runner.rules.analysis import Collected
from runner.static import preflight
from runner.worker.shared.formats import Format

FORMAT_HINT = (
    "pass an ONNX, TorchScript, torch.save, torch.package, safetensors, pickle, joblib, "
    "NumPy, skops, GGUF, Keras or TFLite file, or a model directory (a Hugging Face "
    "repository, a TensorFlow SavedModel)"
)


def check_request(path: Path, architecture: Path | None, fmt: str) -> None:
    """The caller's mistakes, caught before any work starts."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory", "check the model path")
    if architecture is not None and not architecture.is_file():
        raise UsageError(
            f"{architecture}: architecture file not found",
            "pass a Python file that defines build_model()",
        )
    if fmt != "auto":
        try:
            Format(fmt)
        except ValueError as e:
            raise UsageError(
                f"unknown format {fmt!r}", f"use one of: auto, {', '.join(f.value for f in Format)}"
            ) from e


def _format(detected: str, hf: HfInfo | None) -> str:
    """A Hugging Face repository that transformers loads (a config naming the model, and its
    weights or its own code) is that, whatever format its weights are in."""
    if hf is not None and (hf.model_type or hf.architectures) and (hf.weights or hf.remote_code):
        return Format.HUGGINGFACE.value
    return detected


@dataclass
class Admission:
    """One model's pre-flight; `finish()` collects the static read (bounded) into the
    collection, and is safe to call more than once."""

    path: Path
    format: str
    signing: preflight.SigningOptions
    collected: Collected
    pending: preflight.Pending | None = None
    signature: SignatureCheck | None = None
    provenance: ProvenanceInfo | None = None
    # May a Hugging Face repository's own code run (an auto_map)? False: refused before the
    # static read starts (UsageError). A pre-flight runs nothing: True.
    trust_remote_code: bool = True
    # The repo id and revision naming a Hugging Face cache snapshot (runner.hf.cache), if any
    hf_names: tuple[str, str] = ("", "")

    def start(self) -> None:
        """Start the static read, hash the files, check the signature; raise when the run
        must stop here (a required signature, bytes that are no model and no tampering, a
        repository's own code that may not run)."""
        path, c = self.path, self.collected
        hf = describe_repo(path, *self.hf_names)  # bounded JSON and syntax trees, read first
        name = hf.repo_id if hf is not None and hf.repo_id else shown(path)
        require_trust(hf, name, self.trust_remote_code)
        self.pending = preflight.Pending(path)  # the bounded static read, while we go on
        try:
            ident = preflight.identify(path)
        except OSError as e:
            raise UsageError(f"{path}: cannot be read ({e.strerror})") from e
        digests = file_digests(path)
        odd = anomalies(path)
        if odd:
            c.notes.append(
                f"the model directory holds {len(odd)} unusual file(s): " + "; ".join(odd[:5])
            )
        root = root_digest(digests)
        c.model = ModelInfo(
            path=shown(path.resolve()),
            format=self.format if self.format != "auto" else _format(ident.format, hf),
            detected_by=ident.reason,
            size_bytes=sum(d.size_bytes for d in digests),
            files=digests,
            root_digest=root,
            anomalies=odd,
            huggingface=hf,
        )
        self.signature, notes = preflight.check_signature(path, root, self.signing)
        c.notes += notes
        self.provenance = provenance_for(path, root, files=digests)
        sig = self.signature
        if self.signing.require and (sig is None or not sig.verified):
            self.finish()
            why = "missing" if sig is None else f"not verified: {sig.reason}"
            raise IntegrityError(
                f"a signature is required and it is {why}",
                "nothing was run; sign the model or drop --require-signature",
            )
        # Damage that points to tampering is a finding, and the run goes on to record what
        # loading it does; anything else is the caller's mistake.
        if ident.error:
            static = self.finish()
            assert static is not None
            if not static.tamper and not static.aborted:
                raise UsageError(ident.error, FORMAT_HINT)

    def cancel(self) -> None:
        """Interrupted: do not wait for the static read."""
        if self.pending is not None:
            self.pending.cancel()

    def finish(self) -> preflight.StaticResult | None:
        """Wait for the static read (bounded) and put what it found in the collection."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        static = pending.result()
        if static.aborted == "cancelled":  # interrupted: nothing was learned, nothing to say
            return static
        c = self.collected
        c.tamper = static.tamper
        c.static_imports = [
            (i.module, i.name, f" ({i.member})" if i.member else "") for i in static.imports
        ]
        if static.aborted:
            c.notes.append(f"the static pre-flight did not finish: {static.aborted}")
        c.integrity = Integrity(
            static=StaticInfo(
                seconds=round(static.seconds, 6),
                bounds=static.bounds,
                aborted=static.aborted,
                imports=[f"{i.module}.{i.name}" for i in static.imports],
            ),
            signature=self.signature,
            signature_required=self.signing.require,
            provenance=self.provenance,
        )
        return static
