"""Signatures: sign and verify (OpenSSF model signing)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from runner.cli import options as o
from runner.cli.output import json_text, out, shown
from runner.errors import EXIT_FINDINGS, EXIT_OK, UsageError

SignatureOpt = Annotated[
    Path,
    typer.Option(
        "--signature",
        help="the signature file (kept outside the model directory)",
        show_default=False,
    ),
]
ChainOpt = Annotated[
    list[Path] | None,
    typer.Option("--chain", help="CA certificate, PEM (repeat for a chain)", show_default=False),
]
PrivateKey = Annotated[
    Path, typer.Option("--key", help="elliptic-curve private key, PEM", show_default=False)
]
PasswordEnv = Annotated[
    str | None,
    typer.Option(
        "--password-env", help="name of the environment variable holding the key's password"
    ),
]
Cert = Annotated[
    Path | None,
    typer.Option("--cert", help="signing certificate, PEM: sign with it instead of a bare key"),
]
PublicKey = Annotated[Path | None, typer.Option("--key", help="trust this public key (PEM)")]
Identity = Annotated[
    str | None,
    typer.Option(
        "--identity", help="with --chain: the signing certificate's email, URI or common name"
    ),
]
VerifyTrustPolicy = Annotated[
    Path | None,
    typer.Option(
        "--trust-policy",
        help="TOML trust policy (default: $AIRLOCK_TRUST_POLICY, else trust.toml "
        "in the user config directory)",
    ),
]


def _password(password_env: str | None) -> str | None:
    import os

    if not password_env:
        return None
    if password_env not in os.environ:
        raise UsageError(
            f"environment variable {password_env} is not set",
            "export the key's password in it, or drop --password-env",
        )
    return os.environ[password_env]


def sign_cmd(
    model: o.ModelArg,
    signature: SignatureOpt,
    key: PrivateKey,
    password_env: PasswordEnv = None,
    cert: Cert = None,
    chain: ChainOpt = None,
    json_: o.JsonOut = False,
) -> None:
    """Sign MODEL (OpenSSF model signing, file-level sha256) with a key or a certificate."""
    from runner.integrity.sign import sign

    info = sign(
        model,
        signature,
        private_key=key,
        password=_password(password_env),
        certificate_chain=chain,
        signing_certificate=cert,
    )
    if json_:
        sys.stdout.write(json_text(info))
    else:
        out.print(
            f"signed: {info.files} file(s) of {shown(model)} by {shown(info.signer)} (root digest "
            f"{info.root_digest}); signature in {signature}",
            markup=False,
            highlight=False,
        )


def verify_cmd(
    model: o.ModelArg,
    signature: SignatureOpt,
    key: PublicKey = None,
    chain: ChainOpt = None,
    identity: Identity = None,
    trust_policy: VerifyTrustPolicy = None,
    json_: o.JsonOut = False,
) -> None:
    """Verify MODEL's signature. Exit 0 when verified, 1 when not."""
    from runner.integrity.trust import TrustPolicy, default_policy_path
    from runner.integrity.verify import verify
    from runner.report import file_digests, root_digest

    trust = o.trust(key, chain, identity, trust_policy) or TrustPolicy.load(default_policy_path())
    if not (model.exists() or model.is_symlink()):
        raise UsageError(f"model {model} not found", "pass a model file or directory")
    check = verify(model, signature, trust, root_digest(file_digests(model)))
    if json_:
        sys.stdout.write(json_text(check))
    elif check.verified:
        out.print(
            f"verified: signed by {shown(check.signer)} (root digest {check.manifest_digest})",
            markup=False,
            highlight=False,
        )
    else:
        out.print(f"not verified: {shown(check.reason)}", markup=False, highlight=False)
    raise typer.Exit(EXIT_OK if check.verified else EXIT_FINDINGS)
