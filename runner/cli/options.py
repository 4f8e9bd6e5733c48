"""The options the commands share, their defaults (Policy's, in one place), and the builders
that turn options into a Policy, a trust policy and signing options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.errors import UsageError
from runner.policy import GIB, MIB, Policy, Runtime
from runner.rules.catalog import Severity

if TYPE_CHECKING:
    from runner.integrity.trust import TrustPolicy
    from runner.static.preflight import SigningOptions

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SCALES = {"t": 1 << 40, "g": GIB, "m": MIB, "k": 1 << 10}


def parse_bytes(text: str) -> int:
    """'512m', '2g', '1.5GiB' or a plain number of bytes."""
    m = _SIZE.match(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a size; use e.g. 512m or 2g")
    scale = {"": 1, **_SCALES}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def size_text(n: int) -> str:
    """The shortest text parse_bytes reads back as n: 2 GiB is '2g'."""
    for unit, scale in _SCALES.items():
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


# --- defaults: the policy's own, as the options spell them ----------------------------------

_POLICY = Policy()
MEMORY = size_text(_POLICY.memory_bytes)
CPUS = _POLICY.cpus
LOAD_TIMEOUT = _POLICY.load_timeout_s
CALL_TIMEOUT = _POLICY.call_timeout_s
WALL_TIMEOUT = _POLICY.wall_timeout_s
FAIL_ON = Severity.MEDIUM

# --- shared options -------------------------------------------------------------------------

Runtime_ = Annotated[
    Runtime,
    typer.Option(
        "--runtime", help="container runtime: runc or runsc (gVisor, a stronger boundary)"
    ),
]
Memory = Annotated[str, typer.Option("--memory", help="memory limit (no swap), e.g. 2g")]
Cpus = Annotated[float, typer.Option("--cpus", help="CPU limit")]
LoadTimeout = Annotated[float, typer.Option("--load-timeout", help="seconds allowed for load")]
CallTimeout = Annotated[
    float, typer.Option("--call-timeout", help="seconds allowed per inference call")
]
WallTimeout = Annotated[
    float, typer.Option("--wall-timeout", help="seconds the sandbox may live in all")
]
NoTrace = Annotated[bool, typer.Option("--no-trace", help="run without the syscall tracer")]
Arch = Annotated[
    Path | None,
    typer.Option(
        "--arch",
        help="Python file defining build_model(config) -> torch.nn.Module for state dicts "
        "and checkpoints (config: config.json beside the weights as a dict, or None)",
    ),
]
StateKey = Annotated[
    str,
    typer.Option(
        "--state-key",
        help="the key a training checkpoint holds its weights under (A/B for a nested one; "
        "default: found among state_dict, model_state_dict, model, module, ema, ...)",
    ),
]
NonStrict = Annotated[
    bool,
    typer.Option(
        "--non-strict",
        help="load the weights that fit the architecture (load_state_dict(strict=False)); "
        "the report lists the missing and unexpected keys",
    ),
]


def _located_base(base: Path | None) -> Path | None:
    """--base read as the model argument is (runner.hf.base.locate)."""
    from runner.hf.base import locate

    return None if base is None else locate(base)


BaseDir = Annotated[
    Path | None,
    typer.Option(
        "--base",
        help="the base model a PEFT adapter applies to (a Hugging Face repository directory, "
        "or ORG/NAME[@REV] from the cache), mounted read-only in the sandbox (default: the "
        "base the adapter names, when it is in the Hugging Face cache)",
        callback=_located_base,
    ),
]


@dataclass(frozen=True)
class Loading:
    """How to load a checkpoint: --state-key, --non-strict, --base."""

    state_key: str = ""
    non_strict: bool = False
    base: Path | None = None

    def sandbox_kwargs(self) -> dict[str, Any]:
        if self.base is not None and not self.base.is_dir():
            raise UsageError(
                f"--base {self.base}: not a directory", "pass the base model's repository directory"
            )
        return {"state_key": self.state_key, "strict": not self.non_strict, "base": self.base}


Fmt = Annotated[str, typer.Option("--format", help="force a format instead of detecting it")]
TrustRemoteCode = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="let a Hugging Face repository's own code (an auto_map) run, in the sandbox",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")]
ReportOut = Annotated[Path | None, typer.Option("--report", help="write the JSON report here")]
FailOn = Annotated[
    Severity, typer.Option("--fail-on", help="exit 1 when a finding is at or above this severity")
]


def _located(model: Path) -> Path:
    """A model argument that is no path but a repo id (ORG/NAME[@REV]) is taken from the
    Hugging Face cache (the local one only); a cache's repository folder, at refs/main."""
    from runner.hf.cache import locate

    return locate(model)


ModelArg = Annotated[
    Path,
    typer.Argument(
        help="model file, model directory, or ORG/NAME[@REV] from the Hugging Face cache",
        show_default=False,
        callback=_located,
    ),
]
SigOpt = Annotated[
    Path | None,
    typer.Option(
        "--signature", help="the model's signature (default: MODEL.sig beside it, if there is one)"
    ),
]
RequireSig = Annotated[
    bool,
    typer.Option(
        "--require-signature", help="stop before anything runs unless a signature verifies"
    ),
]
TrustPolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust-policy",
        help="TOML trust policy (default: $AIRLOCK_TRUST_POLICY, else "
        "trust.toml in the user config directory)",
    ),
]
TrustKey = Annotated[
    Path | None, typer.Option("--key", help="trust this public key (PEM) instead of a policy")
]
BomOut = Annotated[Path | None, typer.Option("--bom", help="write a CycloneDX 1.6 ML-BOM here")]
ProbesOpt = Annotated[
    Path,
    typer.Option(
        "--probes",
        help=".npz of named input arrays, with optional 'category' and 'label' arrays; "
        'for diff, also a .jsonl of text probes, one {"text", "category", "label"?} a line',
        show_default=False,
    ),
]
OutputName = Annotated[
    str | None, typer.Option("--output", help="the model output to compare (default: the first)")
]
RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="baseline registry (SQLite; default: AIRLOCK_BASELINES or the user data directory)",
    ),
]


# --- builders -------------------------------------------------------------------------------


def policy(
    runtime: Runtime,
    memory: str,
    *,
    cpus: float = CPUS,
    load_timeout: float = LOAD_TIMEOUT,
    call_timeout: float = CALL_TIMEOUT,
    wall_timeout: float = WALL_TIMEOUT,
    no_trace: bool = False,
) -> Policy:
    """The sandbox policy from the command's options; what a command has no option for keeps
    the default."""
    from pydantic import ValidationError

    try:
        return Policy(
            runtime=runtime,
            memory_bytes=parse_bytes(memory),
            cpus=cpus,
            load_timeout_s=load_timeout,
            call_timeout_s=call_timeout,
            wall_timeout_s=wall_timeout,
            trace=not no_trace,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise UsageError(f"invalid option {first['loc'][0]}: {first['msg']}") from e


def trust(
    key: Path | None, chain: list[Path] | None, identity: str | None, trust_policy: Path | None
) -> TrustPolicy | None:
    """The trust policy from the command's options; None when none was given."""
    from runner.integrity.trust import TrustPolicy

    if trust_policy is not None and (key or chain or identity):
        raise UsageError(
            "--trust-policy cannot be combined with --key, --chain or --identity",
            "pass a policy file or direct trust options, not both",
        )
    if key is not None and chain:
        raise UsageError(
            "--key and --chain cannot be combined",
            "use a trust policy to trust keys and certificates at once",
        )
    if identity and not chain:
        raise UsageError("--identity needs --chain", "pass the CA certificate(s) with --chain")
    if key is not None:
        return TrustPolicy.for_key(key)
    if chain:
        return TrustPolicy.for_certificates(chain, identity)
    if trust_policy is not None:
        return TrustPolicy.load(trust_policy)
    return None


def signing(
    signature: Path | None, require: bool, trust_policy: Path | None, key: Path | None
) -> SigningOptions:
    """What to check of the model's signature before anything runs."""
    from runner.static.preflight import SigningOptions

    if signature is not None and not signature.exists():
        raise UsageError(f"signature {signature} not found", "check the --signature path")
    return SigningOptions(
        signature=signature, trust=trust(key, None, None, trust_policy), require=require
    )
