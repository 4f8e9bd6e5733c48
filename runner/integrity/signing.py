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

import base64
import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from runner.errors import UsageError, untrusted_text
from runner.static.manifest import FileDigest, file_digests, parse_sha256, root_digest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.x509 import Certificate

ENV_POLICY = "AIRLOCK_TRUST_POLICY"
MAX_SIGNATURE_BYTES = 64 << 20
_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # what model_signing supports


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
            raise UsageError(f"trust policy {path} not found",
                             f"write one, or set {ENV_POLICY}, or pass --key/--chain") from e
        except OSError as e:
            raise UsageError(f"cannot read trust policy {path}: {e.strerror}", hint) from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"trust policy {path} is not valid TOML ({e})", hint) from e
        unknown = sorted(set(raw) - set(cls.model_fields))
        if unknown:
            raise UsageError(f"trust policy {path}: unknown key {unknown[0]!r}",
                             f"known keys: {', '.join(cls.model_fields)}")
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
        policy = cls(certificate_roots=tuple(chain),
                     identities=(identity,) if identity else ())
        policy.check("--chain")
        return policy

    def check(self, where: str = "trust policy") -> None:
        """Raise UsageError unless this policy can be used to verify anything."""
        if not self.public_keys and not self.certificate_roots:
            raise UsageError(f"{where}: trusts nothing",
                             "list public_keys or certificate_roots")
        if self.fingerprints and not self.public_keys:
            raise UsageError(f"{where}: fingerprints need public_keys",
                             "list the public key files the fingerprints belong to")
        if self.identities and not self.certificate_roots:
            raise UsageError(f"{where}: identities need certificate_roots",
                             "list the CA certificates the signing certificates chain to")
        for key in self.public_keys:
            _load_public_key(key)
        for root in self.certificate_roots:
            _load_certificates(root)

    def keys(self) -> list[_Key]:
        return [_load_public_key(p) for p in self.public_keys]


def default_policy_path() -> Path:
    """$AIRLOCK_TRUST_POLICY, else trust.toml in the user's config directory."""
    env = os.environ.get(ENV_POLICY, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("airlock")) / "trust.toml"


def normal_fingerprint(text: str) -> str:
    """'sha256:AB:CD...', 'abcd...' -> 'abcd...' (64 lowercase hex digits)."""
    return _hex64(text.strip().lower().removeprefix("sha256:").replace(":", ""))


def _hex64(text: str) -> str:
    value = parse_sha256(text)
    if value is None:
        raise ValueError(f"{text!r} is not a sha256 digest (64 hex digits)")
    return value


# --- keys and certificates ------------------------------------------------------------------

@dataclass(frozen=True)
class _Key:
    path: Path
    fingerprint: str  # sha256 hex of the DER SubjectPublicKeyInfo
    hint: str  # what model_signing records in a bundle: sha256 hex of the PEM SubjectPublicKeyInfo


def key_fingerprint(key: EllipticCurvePublicKey) -> str:
    from cryptography.hazmat.primitives import serialization as ser

    der = key.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _key_hint(key: EllipticCurvePublicKey) -> str:
    from cryptography.hazmat.primitives import serialization as ser

    pem = key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _read(path: Path, what: str, hint: str, limit: int = MAX_SIGNATURE_BYTES) -> bytes:
    """At most `limit` + 1 bytes (one more than allowed, so a larger file shows)."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError as e:
        raise UsageError(f"{what} {path} not found", hint) from e
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}", hint) from e


def _load_public_key(path: Path) -> _Key:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    hint = "pass an elliptic-curve public key in PEM (openssl ec -in KEY -pubout)"
    data = _read(path, "public key file", hint)
    try:
        key = ser.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path} is not a PEM public key", hint) from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVES:
        raise UsageError(f"{path} is not a P-256, P-384 or P-521 public key", hint)
    return _Key(path, key_fingerprint(key), _key_hint(key))


def _load_certificates(path: Path) -> list[Certificate]:
    from cryptography import x509

    hint = "pass PEM certificate files"
    data = _read(path, "certificate file", hint)
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


def _describe_certificate(cert: Certificate) -> str:
    ids = certificate_identities(cert)
    return ids[0] if ids else cert.subject.rfc4514_string()


# --- the model on disk ----------------------------------------------------------------------

def _hashing_config() -> Any:
    """The one hashing configuration, for signing and verifying alike."""
    from model_signing import hashing

    return (hashing.Config()  # type: ignore[no-untyped-call]
            .set_ignored_paths(paths=[], ignore_git_paths=False)
            .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
            .set_allow_symlinks(False))


def _model_problem(model: Path) -> str:
    """A symlink or special file in the model, as a one-line reason; '' when there is none."""
    if model.is_symlink():
        return f"model is a symlink: {model}"
    if model.is_file():
        return ""
    if not model.is_dir():
        return f"model is neither a regular file nor a directory: {model}"
    for top, dirs, files in os.walk(model, followlinks=False):
        for name in sorted(dirs + files):
            p = Path(top, name)
            rel = p.relative_to(model).as_posix()
            if p.is_symlink():
                return f"model contains a symlink: {rel}"
            if not (p.is_file() or p.is_dir()):
                return f"model contains a special file: {rel}"
    return ""


def _require_paths(model: Path, signature: Path, *, signing: bool) -> None:
    if not (model.exists() or model.is_symlink()):
        raise UsageError(f"model {model} not found", "pass a model file or directory")
    if not signing and not signature.is_file():
        raise UsageError(f"signature file {signature} not found",
                         "pass the .sig file written by 'airlock sign'")
    m, s = model.resolve(), signature.resolve()
    if s == m or (model.is_dir() and s.is_relative_to(m)):
        raise UsageError(f"signature {signature} is inside the model {model}",
                         "keep signatures outside the model directory: model_signing hashes "
                         "every file in it")


def _model_root(resources: Sequence[tuple[str, str]]) -> str:
    """The root digest over the signed (name, sha256) pairs."""
    return root_digest([FileDigest(path=n, size_bytes=0, sha256=d) for n, d in resources])


# --- signing --------------------------------------------------------------------------------

def _load_private_key(path: Path, password: str | None) -> Any:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    hint = "pass an elliptic-curve private key in PEM (openssl ecparam -genkey)"
    data = _read(path, "private key file", hint)
    try:
        key = ser.load_pem_private_key(data, password.encode() if password else None)
    except TypeError as e:  # encrypted without a password, or a password for a plain key
        if password:
            raise UsageError(f"private key {path} is not encrypted, but a password was given",
                             "drop the password") from e
        raise UsageError(f"private key {path} is encrypted and no password was given",
                         "pass its password (airlock sign --password-env VAR)") from e
    except ValueError as e:
        raise UsageError(f"cannot load private key {path} (not PEM, or a wrong password)",
                         hint) from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _CURVES:
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
        raise UsageError("an encrypted private key needs Linux here",
                         "decrypt the key first (openssl ec -in KEY -out PLAIN)")
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    fd = os.memfd_create("airlock-key", os.MFD_CLOEXEC)
    try:
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view):]
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def sign(model: Path, signature: Path, *, private_key: Path, password: str | None = None,
         certificate_chain: list[Path] | None = None,
         signing_certificate: Path | None = None) -> SignatureInfo:
    """Sign MODEL (a file or a directory) into SIGNATURE, with an elliptic-curve key or, when
    `signing_certificate` is given, with that certificate (and its chain up to the root)."""
    from model_signing import signing as ms_signing

    _require_paths(model, signature, signing=True)
    if certificate_chain and signing_certificate is None:
        raise UsageError("a certificate chain was given without a signing certificate",
                         "pass --cert SIGNING.pem too, or drop --chain")
    if signing_certificate is not None and not certificate_chain:
        # model_signing 1.1.1 fails on an empty chain ("Unable to load PEM file")
        raise UsageError("certificate signing needs the certificate chain",
                         "pass --chain CA.pem (the issuer's certificate, up to the root)")
    problem = _model_problem(model)
    if problem:
        raise UsageError(f"cannot sign: {problem}", "replace symlinks by the files they "
                         "point to; model_signing refuses them")
    key = _load_private_key(private_key, password)
    chain = list(certificate_chain or [])
    signer = "sha256:" + key_fingerprint(key.public_key())
    if signing_certificate is not None:
        from cryptography import x509

        certs = _load_certificates(signing_certificate)
        if certs[0].public_key() != key.public_key():
            raise UsageError(f"{signing_certificate} is not the certificate of {private_key}",
                             "pass the certificate issued for this key")
        for c in chain:
            _load_certificates(c)
        usage_ok = False
        with contextlib.suppress(x509.ExtensionNotFound):
            usage_ok = certs[0].extensions.get_extension_for_class(
                x509.KeyUsage).value.digital_signature
        with contextlib.suppress(x509.ExtensionNotFound):
            usage_ok = usage_ok or x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in \
                certs[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if not usage_ok:
            raise UsageError(f"{signing_certificate} may not sign (no digitalSignature key "
                             "usage, no codeSigning extended key usage)",
                             "issue a certificate for signing")
        signer = _describe_certificate(certs[0])

    try:
        signature.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".sig-", dir=signature.parent)
        os.close(fd)
    except OSError as e:
        raise UsageError(f"cannot write {signature}: {e.strerror}", "choose a writable path") \
            from e
    tmp = Path(tmp_name)
    try:
        with contextlib.ExitStack() as stack:
            key_path = stack.enter_context(_plain_key_file(key)) if password else private_key
            config = ms_signing.Config().set_hashing_config(  # type: ignore[no-untyped-call]
                _hashing_config())
            if signing_certificate is not None:
                config.use_certificate_signer(private_key=key_path,
                                              signing_certificate=signing_certificate,
                                              certificate_chain=chain)
            else:
                config.use_elliptic_key_signer(private_key=key_path)
            config.sign(model, tmp)
        data = tmp.read_bytes()
        tmp.chmod(0o644)  # a signature is public; mkstemp made it 0600
        tmp.replace(signature)
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot sign {model}: {untrusted_text(str(e))}",
                         "check the model and the key") from e
    finally:
        tmp.unlink(missing_ok=True)
    bundle = _parse_bundle(data)
    return SignatureInfo(method="certificate" if signing_certificate else "key",
                         model=str(model), signature=str(signature), signer=signer,
                         files=len(bundle.resources), subject_digest=bundle.subject_digest,
                         root_digest=_model_root(bundle.resources))


# --- verifying ------------------------------------------------------------------------------

class _Unreadable(Exception):
    pass


@dataclass(frozen=True)
class _Bundle:
    method: str
    key_hint: str
    certificate: Certificate | None
    subject_digest: str
    serialization: dict[str, Any]
    resources: list[tuple[str, str]]  # (name, sha256 hex), as signed


def _parse_bundle(data: bytes) -> _Bundle:
    """Read a model-signing bundle ourselves: nothing here is trusted until the library has
    verified the same bytes."""
    from cryptography import x509

    try:
        bundle = json.loads(data)
        material = bundle["verificationMaterial"]
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        if payload.get("predicateType") != _PREDICATE_TYPE:
            raise _Unreadable(f"unsupported predicate type {payload.get('predicateType')!r}")
        subjects = payload["subject"]
        if len(subjects) != 1:
            raise _Unreadable(f"{len(subjects)} subjects, expected one")
        subject = str(subjects[0]["digest"]["sha256"]).lower()
        predicate = payload["predicate"]
        serialization = dict(predicate["serialization"])
        resources = []
        for r in predicate["resources"]:
            if r["algorithm"] != "sha256":
                raise _Unreadable(f"resource digest algorithm {r['algorithm']!r}, not sha256")
            resources.append((str(r["name"]), str(r["digest"]).lower()))
        certificate = None
        if material.get("x509CertificateChain"):
            method, hint = "certificate", ""
            raw = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
            certificate = x509.load_der_x509_certificate(base64.b64decode(raw))
        elif "publicKey" in material:
            method, hint = "key", str((material["publicKey"] or {}).get("hint") or "")
        else:
            raise _Unreadable("no public key hint and no certificate chain")
    except _Unreadable:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
        raise _Unreadable(f"{type(e).__name__}: {str(e)[:200]}") from e
    return _Bundle(method, hint, certificate, subject, serialization, resources)


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
            ("changed", sorted(n for n in actual.keys() & signed.keys()
                               if actual[n] != signed[n])),
            ("not signed (added)", sorted(actual.keys() - signed.keys())),
            ("missing", sorted(signed.keys() - actual.keys()))):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            shown = ", ".join(model.name if n == "." else n for n in names[:3])
            parts.append(f"{label}: {shown}{more}")
    return "model differs from the signature: " + "; ".join(parts) if parts else ""


def _library_failure(e: Exception, model: Path, bundle: _Bundle) -> str:
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


def _run_library(model: Path, data: bytes, bundle: _Bundle, attempts: Sequence[_Key | None],
                 roots: list[Path]) -> _Key | str:
    """Let model_signing verify DATA (the signature bytes we parsed) over MODEL: with each key
    in turn, or (None) with the certificate roots. The key that verified, or why none did."""
    from cryptography.exceptions import InvalidSignature
    from model_signing import verifying

    failure = "no key to try"
    with tempfile.TemporaryDirectory(prefix="airlock-verify-") as tmp:
        copy = Path(tmp, "signature.json")  # the bytes we parsed, and only those
        copy.write_bytes(data)
        for key in attempts:
            config = verifying.Config().set_hashing_config(  # type: ignore[no-untyped-call]
                _hashing_config()).set_ignore_unsigned_files(False)
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


def verify(model: Path, signature: Path, trust: TrustPolicy, manifest_root: str) -> SignatureCheck:
    """Check SIGNATURE over MODEL against TRUST and our manifest's root digest.

    A signature that does not verify gives `verified=False` and a one-line reason; only the
    caller's mistakes (no model, no signature file, a signature inside the model, an unusable
    policy, a malformed manifest digest) raise UsageError.
    """
    _require_paths(model, signature, signing=False)
    trust.check()
    try:
        manifest = _hex64(manifest_root)
    except ValueError as e:
        raise UsageError(f"manifest root digest {manifest_root!r} is not a sha256 digest",
                         "pass runner.report.root_digest(...)") from e
    data = _read(signature, "signature file", "pass the .sig file written by 'airlock sign'")
    method, signer, subject = "", "", ""

    def result(reason: str = "") -> SignatureCheck:
        return SignatureCheck(method=method, signature=str(signature), signer=signer,
                              verified=not reason, reason=untrusted_text(reason),
                              subject_digest=subject, manifest_digest=manifest_root)

    if len(data) > MAX_SIGNATURE_BYTES:
        return result(f"signature file is larger than {MAX_SIGNATURE_BYTES >> 20} MiB")
    try:
        bundle = _parse_bundle(data)
    except _Unreadable as e:
        return result(f"not a model-signing signature: {e}")
    method, subject = bundle.method, bundle.subject_digest

    problem = _model_problem(model)
    if problem:
        return result(problem)
    ser = bundle.serialization
    if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
        return result(f"signature uses {ser.get('method')!r} serialization with "
                      f"{ser.get('hash_type')!r}; Airlock verifies file-level sha256 only")
    ignored = ser.get("ignore_paths") or []
    if not isinstance(ignored, list):
        return result("not a model-signing signature: ignore_paths is not a list")
    if model.is_dir():
        for p in ignored:
            if (model / str(p)).exists() or (model / str(p)).is_symlink():
                return result(f"the signature leaves {p} unsigned, and the model has it")

    if bundle.method == "key":
        if not trust.public_keys:
            return result("signed with a key, but the trust policy lists no public keys")
        keys = trust.keys()
        if bundle.key_hint:  # the bundle names its key: try only that one
            keys = [k for k in keys if k.hint == bundle.key_hint]
            if not keys:
                return result("signed by a key the trust policy does not list")
            signer = "sha256:" + keys[0].fingerprint
        allowed = [k for k in keys if not trust.fingerprints or k.fingerprint in
                   trust.fingerprints]
        if not allowed and not bundle.key_hint:
            return result("no public key in the trust policy has an allowed fingerprint")
        if not allowed:
            return result(f"signer key {signer} is not among the trust policy's fingerprints")
        attempts: list[_Key | None] = list(allowed)
    else:
        assert bundle.certificate is not None
        signer = _describe_certificate(bundle.certificate)
        if not trust.certificate_roots:
            return result("signed with a certificate, but the trust policy lists no "
                          "certificate roots")
        if trust.identities and not set(certificate_identities(bundle.certificate)) & set(
                trust.identities):
            return result(f"certificate identity {signer} is not allowed by the trust policy")
        attempts = [None]

    failure = _run_library(model, data, bundle, attempts, list(trust.certificate_roots))
    if isinstance(failure, _Key):
        signer = "sha256:" + failure.fingerprint
    elif failure:
        return result(failure)

    ours = _model_root(bundle.resources)
    if ours != subject:
        return result("the signed subject digest does not match the signed file digests")
    if ours != manifest:
        return result(f"the signed files (root digest {ours}) are not the manifest's "
                      f"(root digest {manifest})")
    return result()

