"""Trust in model signatures: the trust policy (which keys, fingerprints, certificate roots and
identities a signature may come from), loading keys and certificates with bounded reads, and the
results of signing and verifying as report models. Signing and verifying themselves are in
runner.integrity.sign and runner.integrity.verify.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from runner.errors import UsageError
from runner.static.manifest import parse_sha256

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.x509 import Certificate

ENV_POLICY = "AIRLOCK_TRUST_POLICY"
MAX_SIGNATURE_BYTES = 64 << 20
CURVES = ("secp256r1", "secp384r1", "secp521r1")  # what model_signing supports


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignatureCheck(_Frozen):
    """The outcome of `verify`, for the JSON report."""

    method: str  # "key" | "certificate"; "" when the signature could not be read
    signature: str  # path of the signature file
    signer: str  # key fingerprint "sha256:..." or certificate identity; "" when unknown
    verified: bool
    reason: str  # empty when verified
    subject_digest: str  # root digest from the signed payload, or ""
    manifest_digest: str  # our manifest's root digest, as passed in


class SignatureInfo(_Frozen):
    """What `sign` wrote."""

    method: str  # "key" | "certificate"
    model: str
    signature: str
    signer: str  # key fingerprint "sha256:..." or certificate identity
    files: int
    subject_digest: str  # the signed in-toto subject
    root_digest: str  # recomputed from the signed file digests (runner.report.root_digest)


class TrustPolicy(_Frozen):
    """Whom to believe. Paths are absolute once loaded (relative ones are resolved against the
    policy file's directory)."""

    public_keys: tuple[Path, ...] = ()
    fingerprints: tuple[str, ...] = ()  # sha256 hex of the DER SubjectPublicKeyInfo
    certificate_roots: tuple[Path, ...] = ()  # PEM files; each may hold several certificates
    identities: tuple[str, ...] = ()  # SAN email or URI, or subject CN, of the signing cert

    @field_validator("fingerprints")
    @classmethod
    def _normal_fingerprints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normal_fingerprint(v) for v in value)

    @classmethod
    def load(cls, path: Path) -> TrustPolicy:
        """Read a TOML policy (see docs/signing.md); every problem is a UsageError."""
        import tomllib

        hint = "see docs/signing.md for the trust policy format"
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise UsageError(
                f"trust policy {path} not found",
                f"write one, or set {ENV_POLICY}, or pass --key/--chain",
            ) from e
        except OSError as e:
            raise UsageError(f"cannot read trust policy {path}: {e.strerror}", hint) from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"trust policy {path} is not valid TOML ({e})", hint) from e
        unknown = sorted(set(raw) - set(cls.model_fields))
        if unknown:
            raise UsageError(
                f"trust policy {path}: unknown key {unknown[0]!r}",
                f"known keys: {', '.join(cls.model_fields)}",
            )
        base = path.parent
        for key in ("public_keys", "certificate_roots"):
            value = raw.get(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                raw[key] = [base / Path(v).expanduser() for v in value]
        try:
            policy = cls.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UsageError(f"trust policy {path}: {where}: {first['msg']}", hint) from e
        policy.check(str(path))
        return policy

    @classmethod
    def for_key(cls, path: Path) -> TrustPolicy:
        """Trust one public key (PEM)."""
        policy = cls(public_keys=(path,))
        policy.check("--key")
        return policy

    @classmethod
    def for_certificates(cls, chain: Sequence[Path], identity: str | None = None) -> TrustPolicy:
        """Trust certificates that chain to these roots, optionally only one identity."""
        policy = cls(certificate_roots=tuple(chain), identities=(identity,) if identity else ())
        policy.check("--chain")
        return policy

    def check(self, where: str = "trust policy") -> None:
        """Raise UsageError unless this policy can be used to verify anything."""
        if not self.public_keys and not self.certificate_roots:
            raise UsageError(f"{where}: trusts nothing", "list public_keys or certificate_roots")
        if self.fingerprints and not self.public_keys:
            raise UsageError(
                f"{where}: fingerprints need public_keys",
                "list the public key files the fingerprints belong to",
            )
        if self.identities and not self.certificate_roots:
            raise UsageError(
                f"{where}: identities need certificate_roots",
                "list the CA certificates the signing certificates chain to",
            )
        for key in self.public_keys:
            load_public_key(key)
        for root in self.certificate_roots:
            load_certificates(root)

    def keys(self) -> list[TrustedKey]:
        return [load_public_key(p) for p in self.public_keys]


def default_policy_path() -> Path:
    """$AIRLOCK_TRUST_POLICY, else trust.toml in the user's config directory."""
    env = os.environ.get(ENV_POLICY, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("airlock")) / "trust.toml"


def normal_fingerprint(text: str) -> str:
    """'sha256:AB:CD...', 'abcd...' -> 'abcd...' (64 lowercase hex digits)."""
    return hex64(text.strip().lower().removeprefix("sha256:").replace(":", ""))


def hex64(text: str) -> str:
    value = parse_sha256(text)
    if value is None:
        raise ValueError(f"{text!r} is not a sha256 digest (64 hex digits)")
    return value


# --- keys and certificates ------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    path: Path
    fingerprint: str  # sha256 hex of the DER SubjectPublicKeyInfo
    hint: str  # what model_signing records in a bundle: sha256 hex of the PEM SubjectPublicKeyInfo


def key_fingerprint(key: EllipticCurvePublicKey) -> str:
    from cryptography.hazmat.primitives import serialization as ser

    der = key.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def key_hint(key: EllipticCurvePublicKey) -> str:
    from cryptography.hazmat.primitives import serialization as ser

    pem = key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def read_bounded(path: Path, what: str, hint: str, limit: int = MAX_SIGNATURE_BYTES) -> bytes:
    """At most `limit` + 1 bytes (one more than allowed, so a larger file shows)."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError as e:
        raise UsageError(f"{what} {path} not found", hint) from e
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}", hint) from e


def load_public_key(path: Path) -> TrustedKey:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    hint = "pass an elliptic-curve public key in PEM (openssl ec -in KEY -pubout)"
    data = read_bounded(path, "public key file", hint)
    try:
        key = ser.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path} is not a PEM public key", hint) from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise UsageError(f"{path} is not a P-256, P-384 or P-521 public key", hint)
    return TrustedKey(path, key_fingerprint(key), key_hint(key))


def load_certificates(path: Path) -> list[Certificate]:
    from cryptography import x509

    hint = "pass PEM certificate files"
    data = read_bounded(path, "certificate file", hint)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise UsageError(f"{path} holds no PEM certificate", hint) from e


def certificate_identities(cert: Certificate) -> list[str]:
    """SAN emails, then SAN URIs, then subject common names."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    found: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found += [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
        found += [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
    except (x509.ExtensionNotFound, ValueError):
        pass
    found += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return found


def describe_certificate(cert: Certificate) -> str:
    ids = certificate_identities(cert)
    return ids[0] if ids else cert.subject.rfc4514_string()
