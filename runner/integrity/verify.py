"""Model signatures through OpenSSF model-signing (`model_signing` 1.1.1): sign a model with an
elliptic-curve key or a signing certificate, and verify a signature against a trust policy.

What is checked, in this order, for `verify`:

1. The model holds no symlink and no special file (model_signing would refuse them too, with a
   less clear message; we say which path).
2. The signature is a model-signing bundle with file-level sha256 serialization. Paths the
   signature leaves unsigned (`ignore_paths`, which the upstream CLI fills with `.git` and the
   signature's own name) must not exist in the model: every file must be covered.
3. The signer is one the trust policy allows: a listed public key (and, when fingerprints are
   listed, one of those fingerprints), or a signing certificate that chains to a listed root
   (and, when identities are listed, carries one of them).
4. model_signing verifies the signature and re-hashes the model with our hashing configuration,
   passed explicitly: file serialization, sha256, no ignored paths, `.git` included, symlinks
   refused, unsigned files not ignored.
5. The signed subject (the root digest over the signed file digests) equals the caller's
   manifest root digest; both are computed the same way (`runner.report.root_digest`).

The signature file must live outside the model directory: model_signing hashes every file
under the model, so a signature inside it would count as an unsigned file.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import UsageError, untrusted_text
from runner.static.manifest import file_digests

if TYPE_CHECKING:
    pass

from runner.integrity.bundle import (
    Bundle,
    Unreadable,
    hashing_config,
    model_problem,
    parse_bundle,
    require_paths,
    signed_root,
)
from runner.integrity.trust import (
    MAX_SIGNATURE_BYTES,
    SignatureCheck,
    TrustedKey,
    TrustPolicy,
    certificate_identities,
    describe_certificate,
    hex64,
    read_bounded,
)


def _mismatch(model: Path, resources: Sequence[tuple[str, str]]) -> str:
    """How the model differs from the signed files, as one line ('' when it does not)."""
    digests = file_digests(model)
    if model.is_file():  # model_signing names a single file "."
        actual = {".": digests[0].sha256}
    else:
        actual = {Path(d.path).as_posix(): d.sha256 for d in digests}
    signed = dict(resources)
    parts = []
    for label, names in (
        ("changed", sorted(n for n in actual.keys() & signed.keys() if actual[n] != signed[n])),
        ("not signed (added)", sorted(actual.keys() - signed.keys())),
        ("missing", sorted(signed.keys() - actual.keys())),
    ):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            shown = ", ".join(model.name if n == "." else n for n in names[:3])
            parts.append(f"{label}: {shown}{more}")
    return "model differs from the signature: " + "; ".join(parts) if parts else ""


def _library_failure(e: Exception, model: Path, bundle: Bundle) -> str:
    from cryptography.exceptions import InvalidSignature
    from OpenSSL import crypto

    if isinstance(e, InvalidSignature):
        return "the signature does not match its payload (altered, or made with another key)"
    if isinstance(e, crypto.X509StoreContextError):
        return f"the signing certificate does not chain to a trusted root: {e}"
    text = str(e)
    if isinstance(e, ValueError) and text.startswith("Signature mismatch"):
        return _mismatch(model, bundle.resources) or text
    if isinstance(e, ValueError):
        return text
    return f"signature could not be checked: {type(e).__name__}: {text}"


def _run_library(
    model: Path,
    data: bytes,
    bundle: Bundle,
    attempts: Sequence[TrustedKey | None],
    roots: list[Path],
) -> TrustedKey | str:
    """Let model_signing verify DATA (the signature bytes we parsed) over MODEL: with each key
    in turn, or (None) with the certificate roots. The key that verified, or why none did."""
    from cryptography.exceptions import InvalidSignature
    from model_signing import verifying

    failure = "no key to try"
    with tempfile.TemporaryDirectory(prefix="airlock-verify-") as tmp:
        copy = Path(tmp, "signature.json")  # the bytes we parsed, and only those
        copy.write_bytes(data)
        for key in attempts:
            config = verifying.Config()  # type: ignore[no-untyped-call]
            config = config.set_hashing_config(hashing_config()).set_ignore_unsigned_files(False)
            if key is None:
                config.use_certificate_verifier(certificate_chain=roots)
            else:
                config.use_elliptic_key_verifier(public_key=key.path)
            try:
                # model_signing prints warnings (old bundle formats) on stdout
                with contextlib.redirect_stdout(io.StringIO()):
                    config.verify(model, copy)
            except Exception as e:  # any failure is a failed verification
                failure = _library_failure(e, model, bundle)
                if isinstance(e, InvalidSignature) and key is not None:
                    continue  # a bundle without a key hint: try the next key
                return failure
            return key if key is not None else ""
    return failure


def _manifest_digest(manifest_root: str) -> str:
    """The caller's manifest root digest as 64 hex digits; UsageError when it is not one."""
    try:
        return hex64(manifest_root)
    except ValueError as e:
        raise UsageError(
            f"manifest root digest {manifest_root!r} is not a sha256 digest",
            "pass runner.report.root_digest(...)",
        ) from e


def _unsupported(model: Path, bundle: Bundle) -> str:
    """Why Airlock will not verify BUNDLE over MODEL ('' when it will): a path model_signing
    refuses, a serialization other than file-level sha256, a path left unsigned that exists."""
    problem = model_problem(model)
    if problem:
        return problem
    ser = bundle.serialization
    if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
        return (
            f"signature uses {ser.get('method')!r} serialization with "
            f"{ser.get('hash_type')!r}; Airlock verifies file-level sha256 only"
        )
    ignored = ser.get("ignore_paths") or []
    if not isinstance(ignored, list):
        return "not a model-signing signature: ignore_paths is not a list"
    if model.is_dir():
        for p in ignored:
            if (model / str(p)).exists() or (model / str(p)).is_symlink():
                return f"the signature leaves {p} unsigned, and the model has it"
    return ""


Attempts = list[TrustedKey | None]  # the keys to verify with in turn; None: the roots


def _key_attempts(bundle: Bundle, trust: TrustPolicy) -> tuple[str, Attempts, str]:
    """For a bundle signed with a key: the signer when the bundle names a listed key, the
    listed keys the policy allows, and why there are none ('' when there are)."""
    if not trust.public_keys:
        return "", [], "signed with a key, but the trust policy lists no public keys"
    signer = ""
    keys = trust.keys()
    if bundle.key_hint:  # the bundle names its key: try only that one
        keys = [k for k in keys if k.hint == bundle.key_hint]
        if not keys:
            return "", [], "signed by a key the trust policy does not list"
        signer = "sha256:" + keys[0].fingerprint
    allowed = [k for k in keys if not trust.fingerprints or k.fingerprint in trust.fingerprints]
    if not allowed and not bundle.key_hint:
        return signer, [], "no public key in the trust policy has an allowed fingerprint"
    if not allowed:
        return signer, [], f"signer key {signer} is not among the trust policy's fingerprints"
    return signer, list(allowed), ""


def _certificate_attempts(bundle: Bundle, trust: TrustPolicy) -> tuple[str, Attempts, str]:
    """For a bundle signed with a certificate: the signer it names, the certificate roots as
    the one attempt, and why the policy refuses it ('' when it does not)."""
    assert bundle.certificate is not None
    signer = describe_certificate(bundle.certificate)
    if not trust.certificate_roots:
        return (
            signer,
            [],
            "signed with a certificate, but the trust policy lists no certificate roots",
        )
    if trust.identities and not set(certificate_identities(bundle.certificate)) & set(
        trust.identities
    ):
        return signer, [], f"certificate identity {signer} is not allowed by the trust policy"
    return signer, [None], ""


def _not_the_manifest(bundle: Bundle, manifest: str) -> str:
    """Why the signed files are not the manifest's ('' when they are)."""
    ours = signed_root(bundle.resources)
    if ours != bundle.subject_digest:
        return "the signed subject digest does not match the signed file digests"
    if ours != manifest:
        return (
            f"the signed files (root digest {ours}) are not the manifest's (root digest {manifest})"
        )
    return ""


def verify(model: Path, signature: Path, trust: TrustPolicy, manifest_root: str) -> SignatureCheck:
    """Check SIGNATURE over MODEL against TRUST and our manifest's root digest.

    A signature that does not verify gives `verified=False` and a one-line reason; only the
    caller's mistakes (no model, no signature file, a signature inside the model, an unusable
    policy, a malformed manifest digest) raise UsageError.
    """
    require_paths(model, signature, signing=False)
    trust.check()
    manifest = _manifest_digest(manifest_root)
    data = read_bounded(signature, "signature file", "pass the .sig file written by 'airlock sign'")
    method, signer, subject = "", "", ""

    def result(reason: str = "") -> SignatureCheck:
        return SignatureCheck(
            method=method,
            signature=str(signature),
            signer=signer,
            verified=not reason,
            reason=untrusted_text(reason),
            subject_digest=subject,
            manifest_digest=manifest_root,
        )

    if len(data) > MAX_SIGNATURE_BYTES:
        return result(f"signature file is larger than {MAX_SIGNATURE_BYTES >> 20} MiB")
    try:
        bundle = parse_bundle(data)
    except Unreadable as e:
        return result(f"not a model-signing signature: {e}")
    method, subject = bundle.method, bundle.subject_digest
    refused = _unsupported(model, bundle)
    if refused:
        return result(refused)

    pick = _key_attempts if bundle.method == "key" else _certificate_attempts
    signer, attempts, refused = pick(bundle, trust)
    if refused:
        return result(refused)
    failure = _run_library(model, data, bundle, attempts, list(trust.certificate_roots))
    if isinstance(failure, TrustedKey):
        signer = "sha256:" + failure.fingerprint
    elif failure:
        return result(failure)
    return result(_not_the_manifest(bundle, manifest))
