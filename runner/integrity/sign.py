"""Signing a model through OpenSSF model-signing (`model_signing` 1.1.1), with an elliptic-curve
key or a signing certificate, with file-level sha256 serialization and the shared hashing
configuration (runner.integrity.bundle)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError, untrusted_text

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

from runner.integrity.bundle import (
    hashing_config,
    model_problem,
    parse_bundle,
    require_paths,
    signed_root,
)
from runner.integrity.trust import (
    CURVES,
    SignatureInfo,
    describe_certificate,
    key_fingerprint,
    load_certificates,
    read_bounded,
)

# --- signing --------------------------------------------------------------------------------


def _load_private_key(path: Path, password: str | None) -> Any:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    hint = "pass an elliptic-curve private key in PEM (openssl ecparam -genkey)"
    data = read_bounded(path, "private key file", hint)
    try:
        key = ser.load_pem_private_key(data, password.encode() if password else None)
    except TypeError as e:  # encrypted without a password, or a password for a plain key
        if password:
            raise UsageError(
                f"private key {path} is not encrypted, but a password was given",
                "drop the password",
            ) from e
        raise UsageError(
            f"private key {path} is encrypted and no password was given",
            "pass its password (airlock sign --password-env VAR)",
        ) from e
    except ValueError as e:
        raise UsageError(
            f"cannot load private key {path} (not PEM, or a wrong password)", hint
        ) from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in CURVES:
        raise UsageError(f"{path} is not a P-256, P-384 or P-521 private key", hint)
    return key


@contextlib.contextmanager
def _plain_key_file(key: Any) -> Iterator[Path]:
    """The key, unencrypted, as a path that lives only in memory (a memfd).

    model_signing 1.1.1 cannot take a password for certificate signing, and for key signing
    passes its `password: str` to cryptography, which wants bytes; so we decrypt the key
    ourselves and never write the plain key to disk."""
    from cryptography.hazmat.primitives import serialization as ser

    if not hasattr(os, "memfd_create"):
        raise UsageError(
            "an encrypted private key needs Linux here",
            "decrypt the key first (openssl ec -in KEY -out PLAIN)",
        )
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    fd = os.memfd_create("airlock-key", os.MFD_CLOEXEC)
    try:
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _check_request(
    model: Path,
    signature: Path,
    certificate_chain: list[Path] | None,
    signing_certificate: Path | None,
) -> None:
    """Refuse what cannot be signed, before any key is read: bad paths, a chain without a
    signing certificate or a certificate without its chain, a model model_signing refuses."""
    require_paths(model, signature, signing=True)
    if certificate_chain and signing_certificate is None:
        raise UsageError(
            "a certificate chain was given without a signing certificate",
            "pass --cert SIGNING.pem too, or drop --chain",
        )
    if signing_certificate is not None and not certificate_chain:
        # model_signing 1.1.1 fails on an empty chain ("Unable to load PEM file")
        raise UsageError(
            "certificate signing needs the certificate chain",
            "pass --chain CA.pem (the issuer's certificate, up to the root)",
        )
    problem = model_problem(model)
    if problem:
        raise UsageError(
            f"cannot sign: {problem}",
            "replace symlinks by the files they point to; model_signing refuses them",
        )


def _may_sign(certificate: Certificate) -> bool:
    """Whether the certificate allows signing: a digitalSignature key usage or a codeSigning
    extended key usage."""
    from cryptography import x509

    usage_ok = False
    with contextlib.suppress(x509.ExtensionNotFound):
        usage_ok = certificate.extensions.get_extension_for_class(
            x509.KeyUsage
        ).value.digital_signature
    with contextlib.suppress(x509.ExtensionNotFound):
        usage_ok = (
            usage_ok
            or x509.oid.ExtendedKeyUsageOID.CODE_SIGNING
            in certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
    return usage_ok


def _certificate_signer(
    signing_certificate: Path, chain: list[Path], key: Any, private_key: Path
) -> str:
    """The signer, as described by its certificate, once the certificate is KEY's, the chain
    loads, and the certificate may sign."""
    certs = load_certificates(signing_certificate)
    if certs[0].public_key() != key.public_key():
        raise UsageError(
            f"{signing_certificate} is not the certificate of {private_key}",
            "pass the certificate issued for this key",
        )
    for c in chain:
        load_certificates(c)
    if not _may_sign(certs[0]):
        raise UsageError(
            f"{signing_certificate} may not sign (no digitalSignature key "
            "usage, no codeSigning extended key usage)",
            "issue a certificate for signing",
        )
    return describe_certificate(certs[0])


def _temporary_beside(signature: Path) -> Path:
    """A new empty file (mode 0600) in SIGNATURE's directory, made if need be, to write the
    signature into and rename."""
    try:
        signature.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".sig-", dir=signature.parent)
        os.close(fd)
    except OSError as e:
        raise UsageError(f"cannot write {signature}: {e.strerror}", "choose a writable path") from e
    return Path(tmp_name)


def _sign_into(
    model: Path,
    out: Path,
    key_path: Path,
    signing_certificate: Path | None,
    chain: list[Path],
) -> None:
    """Let model_signing sign MODEL into OUT, with the key at KEY_PATH (unencrypted) and, when
    given, the signing certificate and its chain."""
    from model_signing import signing as ms_signing

    config = ms_signing.Config().set_hashing_config(  # type: ignore[no-untyped-call]
        hashing_config()
    )
    if signing_certificate is not None:
        config.use_certificate_signer(
            private_key=key_path,
            signing_certificate=signing_certificate,
            certificate_chain=chain,
        )
    else:
        config.use_elliptic_key_signer(private_key=key_path)
    config.sign(model, out)


def sign(
    model: Path,
    signature: Path,
    *,
    private_key: Path,
    password: str | None = None,
    certificate_chain: list[Path] | None = None,
    signing_certificate: Path | None = None,
) -> SignatureInfo:
    """Sign MODEL (a file or a directory) into SIGNATURE, with an elliptic-curve key or, when
    `signing_certificate` is given, with that certificate (and its chain up to the root)."""
    _check_request(model, signature, certificate_chain, signing_certificate)
    key = _load_private_key(private_key, password)
    chain = list(certificate_chain or [])
    signer = "sha256:" + key_fingerprint(key.public_key())
    if signing_certificate is not None:
        signer = _certificate_signer(signing_certificate, chain, key, private_key)

    tmp = _temporary_beside(signature)
    try:
        with contextlib.ExitStack() as stack:
            key_path = stack.enter_context(_plain_key_file(key)) if password else private_key
            _sign_into(model, tmp, key_path, signing_certificate, chain)
        data = tmp.read_bytes()
        tmp.chmod(0o644)  # a signature is public; mkstemp made it 0600
        tmp.replace(signature)
    except (ValueError, OSError) as e:
        raise UsageError(
            f"cannot sign {model}: {untrusted_text(str(e))}", "check the model and the key"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    bundle = parse_bundle(data)
    return SignatureInfo(
        method="certificate" if signing_certificate else "key",
        model=str(model),
        signature=str(signature),
        signer=signer,
        files=len(bundle.resources),
        subject_digest=bundle.subject_digest,
        root_digest=signed_root(bundle.resources),
    )
