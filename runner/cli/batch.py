"""Many models: eval. What the batch produced is worked out in runner.batch.results; this
prints it."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from runner.backends import chosen_name
from runner.cli import options as o
from runner.cli.output import err, json_line, note, out, shown, write
from runner.errors import UsageError
from runner.policy import Policy, Runtime

if TYPE_CHECKING:
    from runner.batch.evaluation import EvalResult
    from runner.batch.results import Summary
    from runner.behaviour.baseline import Registry
    from runner.static.preflight import SigningOptions

MAX_SKIPPED_SHOWN = 50  # skipped paths printed; summary.json lists them all

Paths = Annotated[
    list[Path],
    typer.Argument(
        help="model files, directories of models, Hugging Face caches or repo ids (ORG/NAME), "
        "or text files listing paths",
        show_default=False,
    ),
]
EvalProbes = Annotated[
    Path | None,
    typer.Option("--probes", help=".npz of named input arrays fed to the models that accept them"),
]
Jobs = Annotated[
    int | None,
    typer.Option("--jobs", "-j", help="sandboxes at once (default: from CPUs and memory)"),
]
OutDir = Annotated[
    Path, typer.Option("--out", help="results.jsonl, summary.json and one report per model")
]
Cold = Annotated[
    bool,
    typer.Option(
        "--cold",
        help="start every sandbox's worker from nothing; under runc, a batch of torch-family "
        "models otherwise forks each worker from a zygote that has seen no model",
    ),
]
Resume = Annotated[
    bool, typer.Option("--resume", help="skip models whose sha256 already has a line")
]
CheckBaselines = Annotated[
    bool, typer.Option("--baseline", help="check every model that has a baseline for these probes")
]
Signatures = Annotated[
    Path | None,
    typer.Option(
        "--signature",
        help="a directory holding MODEL.sig for each model (default: beside each "
        "model), or one signature file when evaluating one model",
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="where the models are evaluated: local (this machine's engine), ray (a task per "
        "model on a Ray cluster) or kubernetes (a Job per model); default AIRLOCK_BACKEND, else "
        "local",
        show_default=False,
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="the Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default RAY_ADDRESS, else auto)",
        show_default=False,
    ),
]
_K8S = "Kubernetes backend (docs/kubernetes.md)"


def _k8s(flag: str, help: str) -> Any:
    return typer.Option(flag, help=help, rich_help_panel=_K8S, show_default=False)


Namespace = Annotated[
    str | None, _k8s("--namespace", "for the Jobs and the NetworkPolicy [airlock]")
]
Image = Annotated[str | None, _k8s("--image", "the sandbox image in your registry [the local tag]")]
FrameworkImages = Annotated[
    list[str] | None,
    _k8s(
        "--framework-image",
        "FRAMEWORK=REF: a framework sandbox image in your registry (tensorflow=...), for the "
        "models whose format needs it [its local tag]; repeatable",
    ),
]
ControllerImage = Annotated[
    str | None, _k8s("--controller-image", "an image with Airlock installed as a wheel")
]
RuntimeClass = Annotated[str | None, _k8s("--runtime-class", "gVisor's RuntimeClass [gvisor]")]
ModelVolume = Annotated[
    str | None, _k8s("--model-volume", "the PVC holding the models, mounted read-only")
]
ModelRoot = Annotated[Path | None, _k8s("--model-root", "where that volume's root is here")]
ResultsVolume = Annotated[
    str | None, _k8s("--results-volume", "a ReadWriteMany PVC the Jobs write outcomes to")
]
ResultsRoot = Annotated[Path | None, _k8s("--results-root", "where that volume is mounted here")]
SeccompProfile = Annotated[
    str | None,
    _k8s(
        "--seccomp-profile",
        "the kubelet's seccomp subdirectory holding Airlock's profiles; '' for the runtime's "
        "default [airlock]",
    ),
]
DryRun = Annotated[bool, _k8s("--dry-run", "print the manifests (YAML) and create nothing; exit 0")]
RequireSignatures = Annotated[
    bool,
    typer.Option(
        "--require-signature",
        help="evaluate only models whose signature verifies; the others are reported, not run",
    ),
]


def _check(paths: list[Path], probes: Path | None, baseline: bool, signature: Path | None) -> None:
    """The usage errors eval can find before anything runs."""
    from runner.behaviour.probes import load as load_probes

    if probes is not None:
        load_probes(probes)  # a bad probes file is a usage error before anything runs
    if baseline and probes is None:
        raise UsageError(
            "--baseline needs the probes the baselines were recorded with", "pass --probes"
        )
    if (
        signature is not None
        and not signature.is_dir()
        and (len(paths) != 1 or not paths[0].is_file())
    ):
        raise UsageError(
            f"--signature {signature}: a single signature file is for a single model file",
            "pass a directory holding MODEL.sig for each model",
        )


def _previous(results_path: Path, resume: bool) -> list[EvalResult]:
    """The results already in results.jsonl when resuming; a usage error when there are
    results and no --resume."""
    from runner.batch.results import read_results

    if resume and results_path.exists():
        found = read_results(results_path)
        for n in found.bad_lines:
            note(f"resume: ignoring line {n} of {results_path}: not a result (cut off?)")
        return found.results
    if results_path.exists() and results_path.stat().st_size:
        raise UsageError(
            f"{results_path} already has results",
            "pass --resume to continue it, or choose another --out",
        )
    return []


def _evaluate(
    paths: list[Path],
    probes: Path | None,
    jobs: int | None,
    policy: Policy,
    out_dir: Path,
    done: list[EvalResult],
    baselines: Registry | None,
    signing: SigningOptions,
    skipped: list[str],
    backend: Any = None,  # a name, or a runner.backends.base.Backend
    address: str | None = None,
    backend_options: dict[str, Any] | None = None,
) -> list[EvalResult]:
    """Evaluate the models not done yet, appending each result to results.jsonl as it comes;
    the paths discovery passed over are kept in `skipped`."""
    from runner.batch import evaluation
    from runner.cli.progress import ConsoleObserver

    class Observer(ConsoleObserver):
        def passed_over(self, entries: list[tuple[str, str]], more: int) -> None:
            skipped.extend(f"{path} — {why}" for path, why in entries)
            if more:
                skipped.append(f"... and {more} more")

    observer = Observer(err)
    new: list[EvalResult] = []
    try:
        with (out_dir / "results.jsonl").open("a") as fh:
            for result in evaluation.evaluate(
                paths,
                probes=probes,
                jobs=jobs,
                policy=policy,
                out_dir=out_dir,
                skip_sha256={r.sha256 for r in done},
                observer=observer,
                baselines=baselines,
                signing=signing,
                backend=backend,
                address=address,
                backend_options=backend_options,
            ):
                fh.write(json_line(result))
                fh.flush()
                new.append(result)
    finally:
        observer.close()
    return new


def _name(entry: Mapping[str, object]) -> str:
    """A model as the summary names it: its repository and revision, when it came from the
    Hugging Face cache, else its path."""
    return shown(str(entry.get("repo") or entry["path"]))


def _print_skipped(skipped: list[str]) -> None:
    for line in skipped[:MAX_SKIPPED_SHOWN]:
        out.print(f"skipped: {shown(line)}", markup=False, highlight=False)
    if len(skipped) > MAX_SKIPPED_SHOWN:
        out.print(f"skipped: {len(skipped) - MAX_SKIPPED_SHOWN} more, listed in summary.json")


def _print_summary(summary: Summary, results_path: Path) -> None:
    """The summary: a table of verdicts, then the worst and slowest models. Every path came
    from the models' directories (their names are the models' authors'): neutralised."""
    t = Table(
        title=Text(f"{summary['models']} model(s); results in {shown(results_path)}"),
        title_justify="left",
    )
    t.add_column("verdict")
    t.add_column("models", justify="right")
    for verdict, n in summary["by_verdict"].items():
        t.add_row(Text(shown(verdict, 20)), Text(str(n)))
    out.print(t)
    for w in summary["worst"][:5]:
        findings = ", ".join(shown(f, 20) for f in w["findings"])
        out.print(f"worst: {shown(w['verdict'], 20):<10} {_name(w)}  {findings}")
    for s in summary["slowest"][:3]:
        out.print(f"slowest: {s['seconds']:.1f}s {_name(s)}")
    b = summary["baselines"]
    if b["checked"]:
        out.print(
            f"baselines: {b['checked']} checked, {len(b['drift'])} drifted"
            + "".join(f"\ndrift: {shown(p)}" for p in b["drift"])
        )


def _pairs(given: list[str] | None, flag: str) -> dict[str, str] | None:
    """KEY=VALUE options as a dict (None when none was given)."""
    if not given:
        return None
    pairs = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{flag} {item!r}: not KEY=VALUE", f"e.g. {flag} tensorflow=REF")
        pairs[key.strip()] = value.strip()
    return pairs


def _backend_options(
    backend: str, address: str | None, dry_run: bool, **given: Any
) -> dict[str, Any]:
    """The Kubernetes settings given (those not None); an option of another backend than the
    one chosen is a usage error."""
    if address and backend != "ray":
        raise UsageError(f"--address is for the ray backend, not {backend}", "pass --backend ray")
    k8s: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if (k8s or dry_run) and backend != "kubernetes":
        flags = ", ".join("--" + k.replace("_", "-") for k in k8s) or "--dry-run"
        raise UsageError(f"{flags}: for the kubernetes backend", "pass --backend kubernetes")
    return k8s


def _cold_backend(backend: str, policy: Policy, jobs: int | None) -> Any:
    if backend != "local":
        raise UsageError(f"--cold is for the local backend, not {backend}", "drop --cold")
    from runner.backends.local import LocalBackend

    return LocalBackend(policy, jobs, warm=False)


def eval_(
    paths: Paths,
    probes: EvalProbes = None,
    jobs: Jobs = None,
    backend: BackendOpt = None,
    address: Address = None,
    out_dir: OutDir = Path("airlock-results"),
    resume: Resume = False,
    cold: Cold = False,
    baseline: CheckBaselines = False,
    registry: o.RegistryOpt = None,
    signature: Signatures = None,
    require_signature: RequireSignatures = False,
    trust_policy: o.TrustPolicyOpt = None,
    key: o.TrustKey = None,
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    cpus: o.Cpus = o.CPUS,
    load_timeout: o.LoadTimeout = o.LOAD_TIMEOUT,
    call_timeout: o.CallTimeout = o.CALL_TIMEOUT,
    wall_timeout: o.WallTimeout = o.WALL_TIMEOUT,
    no_trace: o.NoTrace = False,
    fail_on: o.FailOn = o.FAIL_ON,
    namespace: Namespace = None,
    image: Image = None,
    framework_image: FrameworkImages = None,
    controller_image: ControllerImage = None,
    runtime_class: RuntimeClass = None,
    model_volume: ModelVolume = None,
    model_root: ModelRoot = None,
    results_volume: ResultsVolume = None,
    results_root: ResultsRoot = None,
    seccomp_profile: SeccompProfile = None,
    dry_run: DryRun = False,
) -> None:
    """Evaluate many models, a fresh sandbox each: JSONL results, a summary, reports."""
    # long function: typer reads every option from this signature; the work is in the helpers
    from runner.batch import results as batch_results
    from runner.behaviour.baseline import Registry

    policy = o.policy(
        runtime,
        memory,
        cpus=cpus,
        load_timeout=load_timeout,
        call_timeout=call_timeout,
        wall_timeout=wall_timeout,
        no_trace=no_trace,
    )
    _check(paths, probes, baseline, signature)
    backend = chosen_name(backend)
    k8s = _backend_options(
        backend,
        address,
        dry_run,
        namespace=namespace,
        image=image,
        framework_images=_pairs(framework_image, "--framework-image"),
        controller_image=controller_image,
        runtime_class=runtime_class,
        model_volume=model_volume,
        model_root=model_root,
        results_volume=results_volume,
        results_root=results_root,
        seccomp_profile=seccomp_profile,
    )
    if dry_run:
        from runner.backends.kubernetes import plan

        sys.stdout.write(plan(paths, policy=policy, probes=probes, **k8s))
        raise typer.Exit(0)
    signing = o.signing(signature, require_signature, trust_policy, key)
    chosen: Any = _cold_backend(backend, policy, jobs) if cold else backend
    results_path = out_dir / "results.jsonl"
    done = _previous(results_path, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    baselines = Registry(registry) if baseline else None
    skipped: list[str] = []
    results = done + _evaluate(
        paths,
        probes,
        jobs,
        policy,
        out_dir,
        done,
        baselines,
        signing,
        skipped,
        chosen,
        address,
        k8s if backend == "kubernetes" else None,
    )
    summary = batch_results.summary(results)
    write(out_dir / "summary.json", json.dumps({**summary, "skipped": skipped}, indent=2) + "\n")
    _print_skipped(skipped)
    _print_summary(summary, results_path)
    raise typer.Exit(batch_results.exit_code(results, fail_on))
