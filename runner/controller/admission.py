"""Admission: what a model must pass on the host before a sandbox starts for it.

The request is checked (the path, the architecture file, a forced format); the bounded static
read starts in its child process and runs while the container starts; the manifest is hashed,
the signature checked against the trust policy and the provenance claims read. A required
signature that is missing or does not verify stops the run before anything executes: then the
files are hashed first. Otherwise they are hashed in a thread while the container starts (a
gigabyte is most of a second), and the digests, the signature check and the provenance join
the collection when the static read does, before the model's bytes reach the worker. The host
only reads bytes here: nothing of the model is deserialised.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.errors import IntegrityError, UsageError
from runner.hf.repo import describe_repo, require_trust
from runner.integrity.provenance_claims import ProvenanceInfo, provenance_for
from runner.integrity.trust import SignatureCheck
from runner.report import (
    FileDigest,
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
    hashing: Future[list[FileDigest]] | None = None  # the manifest, hashed while we go on

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
        odd = anomalies(path)
        if odd:
            c.notes.append(
                f"the model directory holds {len(odd)} unusual file(s): " + "; ".join(odd[:5])
            )
        c.model = ModelInfo(
            path=shown(path.resolve()),
            format=self.format if self.format != "auto" else _format(ident.format, hf),
            detected_by=ident.reason,
            size_bytes=0,
            files=[],
            anomalies=odd,
            huggingface=hf,
        )
        if self.signing.require or self.signing.signature is not None:
            self._manifest(file_digests(path))  # it decides whether anything runs
        else:
            pool = ThreadPoolExecutor(1, thread_name_prefix="airlock-hash")
            self.hashing = pool.submit(file_digests, path)
            pool.shutdown(wait=False)  # its thread ends once the digests are done
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

    def _manifest(self, digests: list[FileDigest]) -> None:
        """The files' digests into the model's record, then the signature and provenance."""
        c, root = self.collected, root_digest(digests)
        c.model = c.model.model_copy(
            update={
                "size_bytes": sum(d.size_bytes for d in digests),
                "files": digests,
                "root_digest": root,
            }
        )
        self.signature, notes = preflight.check_signature(self.path, root, self.signing)
        c.notes += notes
        self.provenance = provenance_for(self.path, root, files=digests)

    def _hashed(self) -> None:
        """Wait for the manifest hashed in the background (once)."""
        hashing, self.hashing = self.hashing, None
        if hashing is None:
            return
        try:
            digests = hashing.result()
        except OSError as e:
            raise UsageError(f"{self.path}: cannot be read ({e.strerror})") from e
        self._manifest(digests)

    def cancel(self) -> None:
        """Interrupted: do not wait for the static read."""
        if self.hashing is not None:
            self.hashing.cancel()
            self.hashing = None
        if self.pending is not None:
            self.pending.cancel()

    def finish(self) -> preflight.StaticResult | None:
        """Wait for the manifest and the static read (bounded) and put what they found in the
        collection."""
        try:
            self._hashed()
        except UsageError:
            self._static()  # its child process is waited for either way
            raise
        return self._static()

    def _static(self) -> preflight.StaticResult | None:
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
