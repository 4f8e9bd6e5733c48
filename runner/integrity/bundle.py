"""The signed bundle and the model it covers: the one hashing configuration that signing and
verifying share, the checks of the model's paths (no symlinks, no special files, the signature
outside the model), and reading a model-signing bundle ourselves, bounded, before the library
verifies the same bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.static.manifest import FileDigest, root_digest
from runner.worker.shared import tree

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

PREDICATE_TYPE = "https://model_signing/signature/v1.0"

# --- the model on disk ----------------------------------------------------------------------


def hashing_config() -> Any:
    """The one hashing configuration, for signing and verifying alike."""
    from model_signing import hashing

    return (
        hashing.Config()  # type: ignore[no-untyped-call]
        .set_ignored_paths(paths=[], ignore_git_paths=False)
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
        .set_allow_symlinks(False)
    )


def model_problem(model: Path) -> str:
    """A symlink or special file in the model, or a tree past the walk's bounds (too deep, too
    many entries, a directory that cannot be listed), as a one-line reason; '' when there is
    none. The walk is iterative and never follows a link or opens a file."""
    if model.is_symlink():
        return f"model is a symlink: {model}"
    if model.is_file():
        return ""
    if not model.is_dir():
        return f"model is neither a regular file nor a directory: {model}"
    walked = tree.scan(model)
    for e in sorted(walked.entries, key=lambda e: e.rel):
        if e.kind is tree.Kind.SYMLINK:
            return f"model contains a symlink: {tree.shown(e.rel)}"
        if e.kind not in (tree.Kind.FILE, tree.Kind.DIR):
            return f"model contains a special file: {tree.shown(e.rel)} (a {e.kind})"
    limits = tree.problems(walked).get("limit")
    return f"model's tree is beyond the walk's bounds: {limits[0]}" if limits else ""


def require_paths(model: Path, signature: Path, *, signing: bool) -> None:
    if not (model.exists() or model.is_symlink()):
        raise UsageError(f"model {model} not found", "pass a model file or directory")
    if not signing and not signature.is_file():
        raise UsageError(
            f"signature file {signature} not found", "pass the .sig file written by 'airlock sign'"
        )
    m, s = model.resolve(), signature.resolve()
    if s == m or (model.is_dir() and s.is_relative_to(m)):
        raise UsageError(
            f"signature {signature} is inside the model {model}",
            "keep signatures outside the model directory: model_signing hashes every file in it",
        )


def signed_root(resources: Sequence[tuple[str, str]]) -> str:
    """The root digest over the signed (name, sha256) pairs."""
    return root_digest([FileDigest(path=n, size_bytes=0, sha256=d) for n, d in resources])


# --- the bundle ---------------------------------------------------------------------------


class Unreadable(Exception):
    pass


@dataclass(frozen=True)
class Bundle:
    method: str
    key_hint: str
    certificate: Certificate | None
    subject_digest: str
    serialization: dict[str, Any]
    resources: list[tuple[str, str]]  # (name, sha256 hex), as signed


def parse_bundle(data: bytes) -> Bundle:
    """Read a model-signing bundle ourselves: nothing here is trusted until the library has
    verified the same bytes."""
    from cryptography import x509

    try:
        bundle = json.loads(data)
        material = bundle["verificationMaterial"]
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        if payload.get("predicateType") != PREDICATE_TYPE:
            raise Unreadable(f"unsupported predicate type {payload.get('predicateType')!r}")
        subjects = payload["subject"]
        if len(subjects) != 1:
            raise Unreadable(f"{len(subjects)} subjects, expected one")
        subject = str(subjects[0]["digest"]["sha256"]).lower()
        predicate = payload["predicate"]
        serialization = dict(predicate["serialization"])
        resources = []
        for r in predicate["resources"]:
            if r["algorithm"] != "sha256":
                raise Unreadable(f"resource digest algorithm {r['algorithm']!r}, not sha256")
            resources.append((str(r["name"]), str(r["digest"]).lower()))
        certificate = None
        if material.get("x509CertificateChain"):
            method, hint = "certificate", ""
            raw = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
            certificate = x509.load_der_x509_certificate(base64.b64decode(raw))
        elif "publicKey" in material:
            method, hint = "key", str((material["publicKey"] or {}).get("hint") or "")
        else:
            raise Unreadable("no public key hint and no certificate chain")
    except Unreadable:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
        raise Unreadable(f"{type(e).__name__}: {str(e)[:200]}") from e
    return Bundle(method, hint, certificate, subject, serialization, resources)
