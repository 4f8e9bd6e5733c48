"""Model signatures through model_signing: round trips, every tamper, trust policies, the CLI.
Keys and certificates are made here with `cryptography`; nothing touches the network."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from runner.errors import UsageError
from runner.integrity import bundle, trust
from runner.integrity.sign import sign
from runner.integrity.trust import SignatureCheck, TrustPolicy, default_policy_path
from runner.integrity.verify import verify
from runner.report import file_digests, root_digest
from tests.fixtures.pki import EMAIL, Pki, _cert, _write_key


def _dir_model(root: Path) -> Path:
    m = root / "model"
    (m / "sub").mkdir(parents=True)
    (m / "config.json").write_text('{"layers": 2}')
    (m / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (m / "sub" / "tokenizer.txt").write_text("a b c\n")
    return m


def _file_model(root: Path) -> Path:
    f = root / "model.bin"
    f.write_bytes(b"\x00weights\xff" * 100)
    return f


def _manifest(model: Path) -> str:
    return root_digest(file_digests(model))


def _check(model: Path, sig: Path, trust: TrustPolicy) -> SignatureCheck:
    return verify(model, sig, trust, _manifest(model))


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [_file_model, _dir_model], ids=["file", "directory"])
def test_key_round_trip(tmp_path: Path, pki: Pki, make: Callable[[Path], Path]) -> None:
    model, sig = make(tmp_path), tmp_path / "model.sig"
    info = sign(model, sig, private_key=pki.key)
    assert info.method == "key" and info.signer == f"sha256:{pki.fingerprint}"
    assert info.root_digest == _manifest(model)
    check = _check(model, sig, TrustPolicy.for_key(pki.pub))
    assert check.verified, check.reason
    assert check.reason == "" and check.method == "key"
    assert check.signer == f"sha256:{pki.fingerprint}"
    assert check.subject_digest == info.subject_digest == root_digest(file_digests(model))
    assert check.manifest_digest == _manifest(model)


def test_subject_digest_is_our_root_digest(tmp_path: Path, pki: Pki) -> None:
    """model_signing's subject equals our root digest, for a directory and for a single file
    (where it is sha256 over the file's digest, not the file's digest itself)."""
    d, f = _dir_model(tmp_path), _file_model(tmp_path)
    sign(d, tmp_path / "d.sig", private_key=pki.key)
    sign(f, tmp_path / "f.sig", private_key=pki.key)
    trust = TrustPolicy.for_key(pki.pub)
    dcheck, fcheck = _check(d, tmp_path / "d.sig", trust), _check(f, tmp_path / "f.sig", trust)
    assert dcheck.verified and fcheck.verified
    assert dcheck.subject_digest == _manifest(d)
    file_sha = file_digests(f)[0].sha256
    assert fcheck.subject_digest == hashlib.sha256(bytes.fromhex(file_sha)).hexdigest()
    assert fcheck.subject_digest == _manifest(f) == fcheck.manifest_digest


def test_path_order_is_by_components(tmp_path: Path, pki: Pki) -> None:
    """model_signing orders 'a/b' before 'a-c' (path components, not strings); so does our
    manifest, so the subject matches it."""
    m = tmp_path / "m"
    (m / "a").mkdir(parents=True)
    (m / "a" / "b").write_text("1")
    (m / "a-c").write_text("2")
    sig = tmp_path / "m.sig"
    sign(m, sig, private_key=pki.key)
    check = _check(m, sig, TrustPolicy.for_key(pki.pub))
    assert check.verified, check.reason
    assert check.subject_digest == _manifest(m)
    by_string = hashlib.sha256(
        b"".join(bytes.fromhex(d.sha256) for d in sorted(file_digests(m), key=lambda d: d.path))
    ).hexdigest()
    assert check.subject_digest != by_string


def test_git_content_is_signed(tmp_path: Path, pki: Pki) -> None:
    m = _dir_model(tmp_path)
    (m / ".git").mkdir()
    (m / ".git" / "config").write_text("[core]\n")
    sig = tmp_path / "m.sig"
    assert sign(m, sig, private_key=pki.key).files == 4
    (m / ".git" / "hooks").write_text("evil")
    check = _check(m, sig, TrustPolicy.for_key(pki.pub))
    assert not check.verified and ".git/hooks" in check.reason


def test_encrypted_key(tmp_path: Path, pki: Pki) -> None:
    key = ser.load_pem_private_key(pki.key.read_bytes(), None)
    enc = tmp_path / "enc.pem"
    enc.write_bytes(
        key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"s3cret")
        )
    )
    model, sig = _file_model(tmp_path), tmp_path / "m.sig"
    with pytest.raises(UsageError, match="password"):
        sign(model, sig, private_key=enc)
    with pytest.raises(UsageError, match="wrong password"):
        sign(model, sig, private_key=enc, password="nope")
    sign(model, sig, private_key=enc, password="s3cret")
    assert _check(model, sig, TrustPolicy.for_key(pki.pub)).verified


def test_certificate_round_trip(tmp_path: Path, pki: Pki) -> None:
    model, sig = _dir_model(tmp_path), tmp_path / "model.sig"
    info = sign(
        model,
        sig,
        private_key=pki.leaf_key,
        signing_certificate=pki.leaf,
        certificate_chain=[pki.ca],
    )
    assert info.method == "certificate" and info.signer == EMAIL
    check = _check(model, sig, TrustPolicy.for_certificates([pki.ca], EMAIL))
    assert check.verified, check.reason
    assert check.method == "certificate" and check.signer == EMAIL
    assert _check(model, sig, TrustPolicy.for_certificates([pki.ca])).verified
    with pytest.raises(UsageError, match="needs the certificate chain"):
        sign(model, sig, private_key=pki.leaf_key, signing_certificate=pki.leaf)


# --- tampering ------------------------------------------------------------------------------


@pytest.fixture
def signed_dir(tmp_path: Path, pki: Pki) -> tuple[Path, Path]:
    model, sig = _dir_model(tmp_path), tmp_path / "model.sig"
    sign(model, sig, private_key=pki.key)
    return model, sig


def _fails(model: Path, sig: Path, trust: TrustPolicy, *words: str) -> SignatureCheck:
    check = _check(model, sig, trust)
    assert not check.verified
    assert check.reason and "\n" not in check.reason
    for w in words:
        assert w in check.reason, check.reason
    return check


def test_flipped_byte(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    data = bytearray((model / "weights.bin").read_bytes())
    data[100] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "changed: weights.bin")


def test_flipped_byte_single_file(tmp_path: Path, pki: Pki) -> None:
    model, sig = _file_model(tmp_path), tmp_path / "m.sig"
    sign(model, sig, private_key=pki.key)
    model.write_bytes(b"X" + model.read_bytes()[1:])
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "changed: model.bin")


def test_added_file(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    (model / "sub" / "extra.py").write_text("import os")
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "not signed (added): sub/extra.py")


def test_removed_file(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    (model / "config.json").unlink()
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "missing: config.json")


def test_wrong_key(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    check = _fails(
        model, sig, TrustPolicy.for_key(pki.other_pub), "key the trust policy does not list"
    )
    assert check.method == "key"


def test_wrong_key_signed_with_other(tmp_path: Path, pki: Pki) -> None:
    model, sig = _dir_model(tmp_path), tmp_path / "m.sig"
    sign(model, sig, private_key=pki.other_key)
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "does not list")


def test_symlink_added(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    (model / "sub" / "link").symlink_to("/etc/hostname")
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "model contains a symlink: sub/link")


def test_special_file_added(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    os.mkfifo(model / "sub" / "pipe")
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "model contains a special file: sub/pipe")


def test_bundle_without_key_hint_tries_each_key(
    signed_dir: tuple[Path, Path], pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """Older bundles do not name their key: every listed key is tried, and model_signing's
    warning (printed on stdout) does not reach our stdout."""
    import json

    model, sig = signed_dir
    bundle = json.loads(sig.read_text())
    bundle["verificationMaterial"]["publicKey"] = {}
    sig.write_text(json.dumps(bundle))
    check = _check(model, sig, TrustPolicy(public_keys=(pki.other_pub, pki.pub)))
    assert check.verified, check.reason
    assert check.signer == f"sha256:{pki.fingerprint}"
    assert capsys.readouterr().out == ""
    _fails(model, sig, TrustPolicy.for_key(pki.other_pub), "does not match its payload")


def test_altered_signature(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    import base64
    import json

    model, sig = signed_dir
    bundle = json.loads(sig.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))
    _fails(model, sig, TrustPolicy.for_key(pki.pub), "does not match its payload")


def test_garbage_signature(tmp_path: Path, pki: Pki) -> None:
    model, sig = _file_model(tmp_path), tmp_path / "m.sig"
    sig.write_text("not json")
    check = _fails(model, sig, TrustPolicy.for_key(pki.pub), "not a model-signing signature")
    assert check.subject_digest == "" and check.method == ""


def test_fingerprint_not_allowed(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    trust = TrustPolicy(public_keys=(pki.pub,), fingerprints=("ab" * 32,))
    check = _fails(model, sig, trust, "not among the trust policy's fingerprints")
    assert check.signer == f"sha256:{pki.fingerprint}"
    ok = TrustPolicy(
        public_keys=(pki.pub, pki.other_pub), fingerprints=(f"SHA256:{pki.fingerprint.upper()}",)
    )
    assert _check(model, sig, ok).verified


def test_identity_not_allowed(tmp_path: Path, pki: Pki) -> None:
    model, sig = _dir_model(tmp_path), tmp_path / "m.sig"
    sign(
        model,
        sig,
        private_key=pki.leaf_key,
        signing_certificate=pki.leaf,
        certificate_chain=[pki.ca],
    )
    check = _fails(
        model,
        sig,
        TrustPolicy.for_certificates([pki.ca], "bob@example.com"),
        f"certificate identity {EMAIL} is not allowed",
    )
    assert check.signer == EMAIL


def test_untrusted_root(tmp_path: Path, pki: Pki) -> None:
    model, sig = _dir_model(tmp_path), tmp_path / "m.sig"
    sign(
        model,
        sig,
        private_key=pki.leaf_key,
        signing_certificate=pki.leaf,
        certificate_chain=[pki.ca],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(_cert("Other CA", key, None, key, ca=True).public_bytes(ser.Encoding.PEM))
    _fails(model, sig, TrustPolicy.for_certificates([other_ca]), "does not chain")


def test_key_signature_with_certificate_policy(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    _fails(model, sig, TrustPolicy.for_certificates([pki.ca]), "lists no public keys")


def test_manifest_mismatch(signed_dir: tuple[Path, Path], pki: Pki) -> None:
    model, sig = signed_dir
    check = verify(model, sig, TrustPolicy.for_key(pki.pub), "0" * 64)
    assert not check.verified and "are not the manifest's" in check.reason


def test_ignored_paths_in_upstream_signature(tmp_path: Path, pki: Pki) -> None:
    """model_signing's default hashing leaves .git unsigned; verification would then skip it
    whatever our configuration says. We refuse when the model has such a path."""
    from model_signing import signing as ms_signing

    model, sig = _dir_model(tmp_path), tmp_path / "m.sig"
    config = ms_signing.Config()  # type: ignore[no-untyped-call]
    config.use_elliptic_key_signer(private_key=pki.key).sign(model, sig)
    trust = TrustPolicy.for_key(pki.pub)
    assert _check(model, sig, trust).verified
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref")
    _fails(model, sig, trust, "leaves .git unsigned")


# --- caller mistakes ------------------------------------------------------------------------


def test_usage_errors(tmp_path: Path, pki: Pki) -> None:
    model = _dir_model(tmp_path)
    trust = TrustPolicy.for_key(pki.pub)
    with pytest.raises(UsageError, match=r"signature file .* not found"):
        verify(model, tmp_path / "nope.sig", trust, _manifest(model))
    with pytest.raises(UsageError, match="inside the model"):
        sign(model, model / "in.sig", private_key=pki.key)
    with pytest.raises(UsageError, match=r"private key file .* not found"):
        sign(model, tmp_path / "m.sig", private_key=tmp_path / "nokey.pem")
    with pytest.raises(UsageError, match="cannot load private key"):
        sign(model, tmp_path / "m.sig", private_key=pki.pub)
    k1 = _write_key(tmp_path / "k1.pem", ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(UsageError, match="not a P-256"):
        sign(model, tmp_path / "m.sig", private_key=k1)
    with pytest.raises(UsageError, match="is not the certificate of"):
        sign(
            model,
            tmp_path / "m.sig",
            private_key=pki.key,
            signing_certificate=pki.leaf,
            certificate_chain=[pki.ca],
        )
    (model / "link").symlink_to("config.json")
    with pytest.raises(UsageError, match="model contains a symlink: link"):
        sign(model, tmp_path / "m.sig", private_key=pki.key)
    with pytest.raises(UsageError, match="trusts nothing"):
        TrustPolicy().check()
    with pytest.raises(UsageError, match="not a PEM public key"):
        TrustPolicy.for_key(pki.key)


# --- trust policy files ---------------------------------------------------------------------


def test_policy_load(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "pub.pem").write_bytes(pki.pub.read_bytes())
    (tmp_path / "ca.pem").write_bytes(pki.ca.read_bytes())
    f = tmp_path / "trust.toml"
    f.write_text(
        f'public_keys = ["keys/pub.pem"]\nfingerprints = ["sha256:{pki.fingerprint}"]\n'
        f'certificate_roots = ["ca.pem"]\nidentities = ["{EMAIL}"]\n'
    )
    policy = TrustPolicy.load(f)
    assert policy.public_keys == (tmp_path / "keys" / "pub.pem",)
    assert policy.fingerprints == (pki.fingerprint,)
    assert policy.certificate_roots == (tmp_path / "ca.pem",)
    assert policy.identities == (EMAIL,)
    model, sig = _dir_model(tmp_path), tmp_path / "m.sig"
    sign(model, sig, private_key=pki.key)
    assert _check(model, sig, policy).verified


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('public_keys = ["pub.pem"]\ntrusted_keys = ["x"]\n', "unknown key 'trusted_keys'"),
        ('public_keys = ["missing.pem"]\n', r"public key file .*missing\.pem not found"),
        ('public_keys = "pub.pem"\n', "public_keys"),
        ('public_keys = ["pub.pem"]\nfingerprints = ["xyz"]\n', "fingerprints"),
        ("public_keys = [\n", "not valid TOML"),
        ("", "trusts nothing"),
    ],
)
def test_policy_load_errors(tmp_path: Path, pki: Pki, text: str, message: str) -> None:
    (tmp_path / "pub.pem").write_bytes(pki.pub.read_bytes())
    f = tmp_path / "trust.toml"
    f.write_text(text)
    with pytest.raises(UsageError, match=message):
        TrustPolicy.load(f)


def test_default_policy_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(trust.ENV_POLICY, str(tmp_path / "t.toml"))
    assert default_policy_path() == tmp_path / "t.toml"
    monkeypatch.delenv(trust.ENV_POLICY)
    assert default_policy_path().name == "trust.toml"
    assert "airlock" in default_policy_path().parts


# --- command line ---------------------------------------------------------------------------


def test_cli_sign_and_verify(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from runner.cli.app import app

    model, sig = _dir_model(tmp_path), tmp_path / "model.sig"
    cli = CliRunner()
    r = cli.invoke(app, ["sign", str(model), "--signature", str(sig), "--key", str(pki.key)])
    assert r.exit_code == 0, r.output
    assert sig.is_file()
    r = cli.invoke(app, ["verify", str(model), "--signature", str(sig), "--key", str(pki.pub)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("verified: signed by sha256:")
    r = cli.invoke(
        app, ["verify", str(model), "--signature", str(sig), "--key", str(pki.pub), "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["verified"] is True
    policy = tmp_path / "trust.toml"
    policy.write_text(f'public_keys = ["{pki.pub}"]\n')
    monkeypatch.setenv(trust.ENV_POLICY, str(policy))
    r = cli.invoke(app, ["verify", str(model), "--signature", str(sig)])
    assert r.exit_code == 0, r.output

    (model / "weights.bin").write_bytes(b"tampered")
    r = cli.invoke(app, ["verify", str(model), "--signature", str(sig), "--key", str(pki.pub)])
    assert r.exit_code == 1
    assert r.stdout == "not verified: model differs from the signature: changed: weights.bin\n"
    assert "Traceback" not in r.output


def test_cli_certificate(tmp_path: Path, pki: Pki) -> None:
    from runner.cli.app import app

    model, sig = _file_model(tmp_path), tmp_path / "model.sig"
    cli = CliRunner()
    r = cli.invoke(
        app,
        [
            "sign",
            str(model),
            "--signature",
            str(sig),
            "--key",
            str(pki.leaf_key),
            "--cert",
            str(pki.leaf),
            "--chain",
            str(pki.ca),
        ],
    )
    assert r.exit_code == 0, r.output
    r = cli.invoke(
        app,
        [
            "verify",
            str(model),
            "--signature",
            str(sig),
            "--chain",
            str(pki.ca),
            "--identity",
            EMAIL,
        ],
    )
    assert r.exit_code == 0 and f"signed by {EMAIL}" in r.stdout, r.output
    r = cli.invoke(
        app,
        [
            "verify",
            str(model),
            "--signature",
            str(sig),
            "--chain",
            str(pki.ca),
            "--identity",
            "mallory@example.com",
        ],
    )
    assert r.exit_code == 1 and r.stdout.startswith("not verified: certificate identity")


def test_cli_usage_errors_exit_2(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.cli import main
    from runner.cli.app import app

    model = _file_model(tmp_path)
    args = [
        "verify",
        str(model),
        "--signature",
        str(tmp_path / "missing.sig"),
        "--key",
        str(pki.pub),
    ]
    r = CliRunner().invoke(app, args)
    assert isinstance(r.exception, UsageError) and r.exception.exit_code == 2
    # through the real entry point, which prints the one line and returns the exit code
    assert main(args) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("airlock: error: signature file") and printed.err.count("\n") == 1
    assert printed.out == ""
    sig = tmp_path / "some.sig"
    sig.write_text("{}")
    for bad in (
        ["--key", str(pki.pub), "--chain", str(pki.ca)],
        ["--identity", EMAIL, "--key", str(pki.pub)],
        ["--key", str(pki.pub), "--trust-policy", str(tmp_path / "t.toml")],
    ):
        r = CliRunner().invoke(app, ["verify", str(model), "--signature", str(sig), *bad])
        assert isinstance(r.exception, UsageError), r.output


def test_no_symlink_following_in_default_walk(tmp_path: Path) -> None:
    """A symlinked directory is reported, not walked into."""
    m = tmp_path / "m"
    m.mkdir()
    (m / "a.bin").write_text("x")
    os.symlink(tmp_path, m / "up")
    assert bundle.model_problem(m) == "model contains a symlink: up"
