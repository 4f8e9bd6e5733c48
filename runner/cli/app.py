"""The `airlock` command line. Results go to stdout; logs, progress and errors to stderr.

Exit codes: 0 success, 2 usage error, 3 could not evaluate (engine, image, sandbox failure).
Every Airlock error is caught here, once, and printed as one line; `--verbose` adds the
traceback.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from runner import __version__
from runner.errors import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, AirlockError, UsageError
from runner.policy import GIB, MIB, Policy, Runtime
from runner.rules.catalog import Severity, Verdict

app = typer.Typer(name="airlock", no_args_is_help=True, add_completion=False,
                  help="Load untrusted models in a sealed container and see what they do.",
                  pretty_exceptions_enable=False)
image_app = typer.Typer(no_args_is_help=True, help="Build and check the sandbox image.")
app.add_typer(image_app, name="image")
report_app = typer.Typer(no_args_is_help=True, help="Views of a JSON report.")
app.add_typer(report_app, name="report")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_state = {"verbose": False}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """'512m', '2g', '1.5GiB' or a plain number of bytes."""
    m = _SIZE.match(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a size; use e.g. 512m or 2g")
    scale = {"": 1, "k": 1 << 10, "m": MIB, "g": GIB, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


# --- shared options -------------------------------------------------------------------------

Runtime_ = Annotated[Runtime, typer.Option("--runtime", help="container runtime: runc or "
                                           "runsc (gVisor, a stronger boundary)")]
Memory = Annotated[str, typer.Option("--memory", help="memory limit (no swap), e.g. 2g")]
Cpus = Annotated[float, typer.Option("--cpus", help="CPU limit")]
LoadTimeout = Annotated[float, typer.Option("--load-timeout", help="seconds allowed for load")]
CallTimeout = Annotated[float, typer.Option("--call-timeout",
                                            help="seconds allowed per inference call")]
WallTimeout = Annotated[float, typer.Option("--wall-timeout",
                                            help="seconds the sandbox may live in all")]
NoTrace = Annotated[bool, typer.Option("--no-trace", help="run without the syscall tracer")]
Arch = Annotated[Path | None, typer.Option("--arch", help="Python file defining build_model() "
                                           "for state dicts and safetensors")]
Fmt = Annotated[str, typer.Option("--format", help="force a format instead of detecting it")]
JsonOut = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")]
ReportOut = Annotated[Path | None, typer.Option("--report", help="write the JSON report here")]
FailOn = Annotated[Severity, typer.Option("--fail-on", help="exit 1 when a finding is at or "
                                          "above this severity")]
ModelArg = Annotated[Path, typer.Argument(help="model file or model directory",
                                          show_default=False)]
SigOpt = Annotated[Path | None, typer.Option("--signature", help="the model's signature "
                                             "(default: MODEL.sig beside it, if there is one)")]
RequireSig = Annotated[bool, typer.Option("--require-signature", help="stop before anything "
                                          "runs unless a signature verifies")]
TrustPolicyOpt = Annotated[Path | None, typer.Option(
    "--trust-policy", help="TOML trust policy (default: $AIRLOCK_TRUST_POLICY, else "
    "trust.toml in the user config directory)")]
TrustKey = Annotated[Path | None, typer.Option("--key", help="trust this public key (PEM) "
                                               "instead of a policy")]
BomOut = Annotated[Path | None, typer.Option("--bom", help="write a CycloneDX 1.6 ML-BOM "
                                             "here")]


def _trust(key: Path | None, chain: list[Path] | None, identity: str | None,
           trust_policy: Path | None) -> Any:
    """The trust policy from the command's options; None when none was given."""
    from runner.integrity import signing as _signing

    if trust_policy is not None and (key or chain or identity):
        raise UsageError("--trust-policy cannot be combined with --key, --chain or --identity",
                         "pass a policy file or direct trust options, not both")
    if key is not None and chain:
        raise UsageError("--key and --chain cannot be combined", "use a trust policy to "
                         "trust keys and certificates at once")
    if identity and not chain:
        raise UsageError("--identity needs --chain", "pass the CA certificate(s) with --chain")
    if key is not None:
        return _signing.TrustPolicy.for_key(key)
    if chain:
        return _signing.TrustPolicy.for_certificates(chain, identity)
    if trust_policy is not None:
        return _signing.TrustPolicy.load(trust_policy)
    return None


def _signing_opts(signature: Path | None, require: bool, trust_policy: Path | None,
                  key: Path | None) -> Any:
    from runner.static.preflight import SigningOptions

    if signature is not None and not signature.exists():
        raise UsageError(f"signature {signature} not found", "check the --signature path")
    return SigningOptions(signature=signature, trust=_trust(key, None, None, trust_policy),
                          require=require)


def _policy(runtime: Runtime, memory: str, cpus: float, load_timeout: float,
            call_timeout: float, wall_timeout: float, no_trace: bool) -> Policy:
    from pydantic import ValidationError

    try:
        return Policy(runtime=runtime, memory_bytes=parse_bytes(memory), cpus=cpus,
                      load_timeout_s=load_timeout, call_timeout_s=call_timeout,
                      wall_timeout_s=wall_timeout, trace=not no_trace)
    except ValidationError as e:
        first = e.errors()[0]
        raise UsageError(f"invalid option {first['loc'][0]}: {first['msg']}") from e


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                help="show tracebacks")] = False) -> None:
    _state["verbose"] = verbose


# --- model commands -------------------------------------------------------------------------

def _load_inputs(specs: list[str]) -> dict[str, Any] | np.ndarray:
    if len(specs) == 1 and "=" not in specs[0]:
        return _read_array_file(Path(specs[0]))
    feed: dict[str, Any] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            if file.endswith(".npz") or name.endswith(".npz"):
                loaded = _read_array_file(Path(name))
                assert isinstance(loaded, dict)
                feed.update(loaded)
                continue
            raise UsageError(f"--input {spec!r}: with several inputs, name each one",
                             "use --input NAME=FILE.npy (or one .npz)")
        arr = _read_array_file(Path(file))
        if isinstance(arr, dict):
            raise UsageError(f"--input {spec!r}: a .npz holds several arrays",
                             "pass it without a name")
        feed[name] = arr
    return feed


def _read_array_file(path: Path) -> dict[str, Any] | np.ndarray:
    from runner.behaviour.probes import load_arrays

    if not path.is_file():
        raise UsageError(f"input file {path} not found", "check the --input path")
    try:
        return load_arrays(path)
    except ValueError as e:
        raise UsageError(f"input file {path} is not a .npy or .npz array file ({e})",
                         "save inputs with numpy.save or numpy.savez") from e


def _run(model: Path, policy: Policy, arch: Path | None, fmt: str, inputs: list[str] | None,
         output_dir: Path | None, as_json: bool, report_path: Path | None,
         fail_on: Severity, signing: Any = None, bom: Path | None = None) -> int:
    from runner.controller.sandbox import Sandbox
    from runner.errors import IntegrityError

    feed = _load_inputs(inputs) if inputs else None
    sb = Sandbox(model, policy, architecture=arch, format=fmt, signing=signing)
    outputs: dict[str, np.ndarray] = {}
    failure: AirlockError | None = None
    try:
        with sb:
            if feed is not None:
                outputs = sb.infer(feed)
    except UsageError:
        raise
    except AirlockError as e:
        failure = e
    report = sb.report()
    if report.sandbox is None and failure is not None and not isinstance(
            failure, IntegrityError):
        raise failure  # nothing ran (engine or image problem): a plain error line
    if output_dir is not None and outputs:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, arr in outputs.items():
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "output"
            np.save(output_dir / f"{safe}.npy", arr)
    _show(report, as_json, report_path, bom)
    if not as_json:
        with np.printoptions(precision=4, threshold=20, edgeitems=3):
            for name, arr in outputs.items():
                out.print(f"{name} =\n{arr}", markup=False, highlight=False)
    if failure is not None:
        err.print(f"airlock: error: {failure.diagnostics()}", markup=False, highlight=False)
        if isinstance(failure, IntegrityError):
            return failure.exit_code
    return exit_code(report, fail_on)


def _show(report: Any, as_json: bool, report_path: Path | None = None,
          bom: Path | None = None) -> None:
    """Write the JSON report and the BOM where asked, then print the report (as JSON with
    --json, else the terminal summary)."""
    from runner.views import View, render
    from runner.views.terminal import print_report

    if report_path is not None:
        _write(report_path, render(report, View.JSON))
    if bom is not None:
        _write_bom(report, bom)
    if as_json:
        sys.stdout.write(render(report, View.JSON))
    else:
        print_report(report, out)


def _write_bom(report: Any, path: Path, properties: dict[str, str] | None = None) -> None:
    from runner.integrity.bom import checked_bom

    _write(path, checked_bom(report, properties))


def exit_code(report: Any, fail_on: Severity) -> int:
    """1 for findings at or above fail_on, else 3 when the model could not be evaluated."""
    if any(f.severity.rank >= fail_on.rank for f in report.findings):
        return EXIT_FINDINGS
    if report.verdict is Verdict.ERROR:
        return EXIT_ERROR
    return EXIT_OK


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}", "choose a writable path") from e


@app.command()
def run(model: ModelArg,
        input: Annotated[list[str], typer.Option("--input", "-i", help="NAME=FILE.npy, or "
                         "FILE.npy for a single-input model, or FILE.npz")],
        output_dir: Annotated[Path | None, typer.Option("--output-dir", help="write one .npy "
                              "per output here")] = None,
        arch: Arch = None, format: Fmt = "auto", runtime: Runtime_ = Runtime.RUNC,
        memory: Memory = "2g", cpus: Cpus = 1.0, load_timeout: LoadTimeout = 120.0,
        call_timeout: CallTimeout = 60.0, wall_timeout: WallTimeout = 900.0,
        no_trace: NoTrace = False, json_: JsonOut = False, report: ReportOut = None,
        fail_on: FailOn = Severity.MEDIUM, signature: SigOpt = None,
        require_signature: RequireSig = False, trust_policy: TrustPolicyOpt = None,
        key: TrustKey = None, bom: BomOut = None) -> None:
    """Load MODEL in a sandbox and run inference on the given inputs."""
    policy = _policy(runtime, memory, cpus, load_timeout, call_timeout, wall_timeout, no_trace)
    signing = _signing_opts(signature, require_signature, trust_policy, key)
    raise typer.Exit(_run(model, policy, arch, format, input, output_dir, json_, report,
                          fail_on, signing, bom))


@app.command()
def scan(model: ModelArg, arch: Arch = None, format: Fmt = "auto",
         runtime: Runtime_ = Runtime.RUNC, memory: Memory = "2g", cpus: Cpus = 1.0,
         load_timeout: LoadTimeout = 120.0, wall_timeout: WallTimeout = 900.0,
         no_trace: NoTrace = False, json_: JsonOut = False, report: ReportOut = None,
         fail_on: FailOn = Severity.MEDIUM, signature: SigOpt = None,
         require_signature: RequireSig = False, trust_policy: TrustPolicyOpt = None,
         key: TrustKey = None, bom: BomOut = None) -> None:
    """Load MODEL in a sandbox without running inference: what does loading it do?"""
    policy = _policy(runtime, memory, cpus, load_timeout, 60.0, wall_timeout, no_trace)
    signing = _signing_opts(signature, require_signature, trust_policy, key)
    raise typer.Exit(_run(model, policy, arch, format, None, None, json_, report, fail_on,
                          signing, bom))


@app.command()
def preflight(model: ModelArg, json_: JsonOut = False, report: ReportOut = None,
              fail_on: FailOn = Severity.MEDIUM, signature: SigOpt = None,
              require_signature: RequireSig = False, trust_policy: TrustPolicyOpt = None,
              key: TrustKey = None, bom: BomOut = None) -> None:
    """Read MODEL's bytes only, starting nothing: manifest, format, the imports its pickles
    would perform, signs of tampering, signature and provenance. No Docker needed."""
    from runner.controller.sandbox import Sandbox

    signing = _signing_opts(signature, require_signature, trust_policy, key)
    rep = Sandbox(model, signing=signing).preflight_report()
    _show(rep, json_, report, bom)
    if rep.error is not None:
        err.print(f"airlock: error: {rep.error.message}; {rep.error.hint}", markup=False,
                  highlight=False)
        raise typer.Exit(EXIT_FINDINGS)
    raise typer.Exit(exit_code(rep, fail_on))


@app.command()
def describe(model: ModelArg, arch: Arch = None, format: Fmt = "auto",
             runtime: Runtime_ = Runtime.RUNC, memory: Memory = "2g",
             load_timeout: LoadTimeout = 120.0, json_: JsonOut = False) -> None:
    """Print MODEL's inputs and outputs (it is loaded in a sandbox to find them)."""
    policy = _policy(runtime, memory, 1.0, load_timeout, 60.0, 900.0, False)
    raise typer.Exit(_run(model, policy, arch, format, None, None, json_, None,
                          Severity.CRITICAL))


# --- behaviour: diffs and baselines --------------------------------------------------------

ProbesOpt = Annotated[Path, typer.Option("--probes", help=".npz of named input arrays, with "
                                         "optional 'category' and 'label' arrays",
                                         show_default=False)]
OutputName = Annotated[str | None, typer.Option("--output", help="the model output to "
                                                "compare (default: the first)")]
RegistryOpt = Annotated[Path | None, typer.Option("--registry", help="baseline registry "
                                                  "(SQLite; default: AIRLOCK_BASELINES or "
                                                  "the user data directory)")]
baseline_app = typer.Typer(no_args_is_help=True, help="Record behavioural baselines and "
                           "check models against them.")
app.add_typer(baseline_app, name="baseline")


def _save_report(report: Any, path: Path) -> None:
    from runner.views import View, render

    _write(path, render(report, View.JSON))


@app.command("diff")
def diff_(base: Annotated[Path, typer.Option("--base", help="the base model the candidate "
                                             "claims to derive from", show_default=False)],
          candidate: Annotated[Path, typer.Option("--candidate", help="the model under test",
                                                  show_default=False)],
          probes: ProbesOpt,
          control: Annotated[Path | None, typer.Option("--control", help="a benign fine-tune "
                                                       "of the same base, as the control")]
          = None,
          no_rerun: Annotated[bool, typer.Option("--no-rerun", help="without --control, use "
                                                 "the pooled other categories instead of a "
                                                 "second run of the base")] = False,
          out_dir: Annotated[Path | None, typer.Option("--out", help="write candidate.json, "
                                                       "base.json, control.json, diff.html "
                                                       "and candidate.cdx.json here")] = None,
          output: OutputName = None,
          alpha: Annotated[float, typer.Option("--alpha", help="false discovery rate")] = 0.05,
          min_effect: Annotated[float, typer.Option("--min-effect", help="flip rate over the "
                                                    "control's needed to flag (0-1)")] = 0.15,
          runtime: Runtime_ = Runtime.RUNC, memory: Memory = "2g", cpus: Cpus = 1.0,
          load_timeout: LoadTimeout = 120.0, call_timeout: CallTimeout = 60.0,
          no_trace: NoTrace = False, json_: JsonOut = False,
          fail_on: FailOn = Severity.MEDIUM) -> None:
    """Compare a candidate with its base model on probes, each in its own sandbox."""
    from runner.behaviour.diff import diff
    from runner.views import View, render

    policy = _policy(runtime, memory, cpus, load_timeout, call_timeout, 900.0, no_trace)
    outcome = diff(base, candidate, probes, control=control, rerun=not no_rerun,
                   output=output, policy=policy, alpha=alpha, min_effect=min_effect,
                   progress=lambda m: err.print(m, markup=False, highlight=False))
    report = outcome.candidate
    if out_dir is not None:
        _save_report(report, out_dir / "candidate.json")
        _save_report(outcome.base, out_dir / "base.json")
        if outcome.control is not None:
            _save_report(outcome.control, out_dir / "control.json")
        _write(out_dir / "diff.html", render(report, View.HTML))
        _write_bom(report, out_dir / "candidate.cdx.json")
        err.print(f"reports in {out_dir}/", markup=False, highlight=False)
    _show(report, json_)
    code = exit_code(report, fail_on)
    if code == EXIT_OK and outcome.base.findings and any(
            f.severity.rank >= fail_on.rank for f in outcome.base.findings):
        err.print(f"the base model has findings of its own (verdict {outcome.base.verdict})",
                  markup=False, highlight=False)
        code = EXIT_FINDINGS
    raise typer.Exit(code)


@baseline_app.command("record")
def baseline_record(model: ModelArg, probes: ProbesOpt,
                    name: Annotated[str | None, typer.Option("--name", help="the baseline's "
                                                             "name (default: the model's file "
                                                             "or directory name)")] = None,
                    registry: RegistryOpt = None, output: OutputName = None,
                    runtime: Runtime_ = Runtime.RUNC, memory: Memory = "2g",
                    no_trace: NoTrace = False, report: ReportOut = None) -> None:
    """Run MODEL on the probes in a sandbox and store what it did as a baseline."""
    from runner.behaviour import baseline

    policy = _policy(runtime, memory, 1.0, 120.0, 60.0, 900.0, no_trace)
    rep, entry = baseline.record(model, probes, name=name, registry=registry, policy=policy,
                                 output=output)
    if report is not None:
        _save_report(rep, report)
    reg = baseline.Registry(registry).path
    out.print(f"recorded baseline {entry.name!r}: {entry.rows} probes, output "
              f"{entry.output!r}, model {entry.model_root[:16]}…, {entry.runtime} on image "
              f"{entry.image_id[:19]}, in {reg}", markup=False, highlight=False)
    if rep.findings:
        err.print(f"note: the model's run had findings (verdict {rep.verdict}); the baseline "
                  "records them as they are", markup=False, highlight=False)


@baseline_app.command("check")
def baseline_check(model: ModelArg, probes: ProbesOpt,
                   name: Annotated[str | None, typer.Option("--name", help="the baseline to "
                                                            "check against (default: the "
                                                            "model's name)")] = None,
                   registry: RegistryOpt = None,
                   tolerance: Annotated[float, typer.Option("--tolerance", help="allowed "
                                                            "difference on another image or "
                                                            "runtime")] = 1e-4,
                   runtime: Runtime_ = Runtime.RUNC, memory: Memory = "2g",
                   no_trace: NoTrace = False, json_: JsonOut = False,
                   report: ReportOut = None, fail_on: FailOn = Severity.MEDIUM) -> None:
    """Rerun MODEL on the probes and compare with its baseline; drift is a finding."""
    from runner.behaviour import baseline

    policy = _policy(runtime, memory, 1.0, 120.0, 60.0, 900.0, no_trace)
    rep = baseline.check(model, probes, name=name, registry=registry, policy=policy,
                         tolerance=tolerance)
    _show(rep, json_, report)
    raise typer.Exit(exit_code(rep, fail_on))


@baseline_app.command("list")
def baseline_list(registry: RegistryOpt = None, json_: JsonOut = False) -> None:
    """List the recorded baselines."""
    from dataclasses import asdict

    from runner.behaviour import baseline

    entries = baseline.Registry(registry).entries()
    if json_:
        out.print_json(json.dumps([{k: v for k, v in asdict(e).items() if k != "summary"}
                                   for e in entries]))
        return
    t = Table(title=f"{len(entries)} baseline(s) in {baseline.Registry(registry).path}",
              title_justify="left")
    for col in ("name", "probes", "rows", "model", "runtime", "image", "recorded"):
        t.add_column(col)
    for e in entries:
        t.add_row(e.name, e.probes_digest[:12], str(e.rows), e.model_root[:12], e.runtime,
                  e.image_id[7:19], e.recorded_at)
    out.print(t)


# --- housekeeping ---------------------------------------------------------------------------

@image_app.command("build")
def image_build(force: Annotated[bool, typer.Option("--force", help="rebuild even when "
                                                    "current")] = False) -> None:
    """Build the sandbox image offline (the base is bootstrapped when no registry answers)."""
    from runner.controller import images as _image

    image = _image.build(lambda line: err.print(line, markup=False, highlight=False), force)
    out.print(image, markup=False, highlight=False)


@image_app.command("status")
def image_status(json_: JsonOut = False) -> None:
    """Say whether the sandbox image is current. Exit 0 when it is, 3 otherwise."""
    from runner.controller import images as _image

    st = _image.status()
    if json_:
        out.print_json(json.dumps({"state": st.state.value, "tag": st.tag,
                                   "image_id": st.image_id, "other_tags": st.other_tags}))
    else:
        out.print(st.describe(), markup=False, highlight=False)
    raise typer.Exit(EXIT_OK if st.state is _image.ImageState.CURRENT else EXIT_ERROR)


@app.command("eval")
def eval_(paths: Annotated[list[Path], typer.Argument(help="model files, directories of "
                                                      "models, or text files listing paths",
                                                      show_default=False)],
          probes: Annotated[Path | None, typer.Option("--probes", help=".npz of named input "
                                                      "arrays fed to the models that accept "
                                                      "them")] = None,
          jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="sandboxes at once "
                                                   "(default: from CPUs and memory)")] = None,
          out_dir: Annotated[Path, typer.Option("--out", help="results.jsonl, summary.json "
                                                "and one report per model")] = Path(
                                                    "airlock-results"),
          resume: Annotated[bool, typer.Option("--resume", help="skip models whose sha256 "
                                               "already has a line")] = False,
          baseline: Annotated[bool, typer.Option("--baseline", help="check every model that "
                                                 "has a baseline for these probes")] = False,
          registry: RegistryOpt = None,
          signature: Annotated[Path | None, typer.Option(
              "--signature", help="a directory holding MODEL.sig for each model (default: "
              "beside each model), or one signature file when evaluating one model")] = None,
          require_signature: Annotated[bool, typer.Option(
              "--require-signature", help="evaluate only models whose signature verifies; "
              "the others are reported, not run")] = False,
          trust_policy: TrustPolicyOpt = None, key: TrustKey = None,
          runtime: Runtime_ = Runtime.RUNC, memory: Memory = "2g", cpus: Cpus = 1.0,
          load_timeout: LoadTimeout = 120.0, call_timeout: CallTimeout = 60.0,
          wall_timeout: WallTimeout = 900.0, no_trace: NoTrace = False,
          fail_on: FailOn = Severity.MEDIUM) -> None:
    """Evaluate many models, a fresh sandbox each: JSONL results, a summary, reports."""
    from runner.batch import evaluation as batch
    from runner.cli.progress import ConsoleObserver

    policy = _policy(runtime, memory, cpus, load_timeout, call_timeout, wall_timeout, no_trace)
    from runner.behaviour.baseline import Registry
    from runner.behaviour.probes import load as load_probes

    if probes is not None:
        load_probes(probes)  # a bad probes file is a usage error before anything runs
    if baseline and probes is None:
        raise UsageError("--baseline needs the probes the baselines were recorded with",
                         "pass --probes")
    if signature is not None and not signature.is_dir() and (
            len(paths) != 1 or not paths[0].is_file()):
        raise UsageError(f"--signature {signature}: a single signature file is for a single "
                         "model file", "pass a directory holding MODEL.sig for each model")
    signing = _signing_opts(signature, require_signature, trust_policy, key)
    results_path = out_dir / "results.jsonl"
    done: list[batch.EvalResult] = []
    if resume and results_path.exists():
        done = _read_results(results_path)
    elif results_path.exists() and results_path.stat().st_size:
        raise UsageError(f"{results_path} already has results",
                         "pass --resume to continue it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    observer = ConsoleObserver(err)
    new: list[batch.EvalResult] = []
    try:
        with results_path.open("a") as fh:
            for result in batch.evaluate(paths, probes=probes, jobs=jobs, policy=policy,
                                         out_dir=out_dir, skip_sha256={r.sha256 for r in done},
                                         observer=observer,
                                         baselines=Registry(registry) if baseline else None,
                                         signing=signing):
                fh.write(result.model_dump_json() + "\n")
                fh.flush()
                new.append(result)
    finally:
        observer.close()
    results = done + new
    summary = _summary(results)
    _write(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, results_path)
    code = EXIT_OK
    if any(Severity(s).rank >= fail_on.rank for r in results for s in r.findings):
        code = EXIT_FINDINGS
    elif any(r.verdict is Verdict.ERROR for r in results):
        code = EXIT_ERROR
    raise typer.Exit(code)


def _read_results(path: Path) -> list[Any]:
    from pydantic import ValidationError

    from runner.batch.evaluation import EvalResult

    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(EvalResult.model_validate_json(line))
        except ValidationError:
            err.print(f"resume: ignoring line {n} of {path}: not a result (cut off?)",
                      markup=False, highlight=False)
    return out


def _summary(results: list[Any]) -> dict[str, Any]:
    by_verdict = {v.value: 0 for v in Verdict}
    for r in results:
        by_verdict[r.verdict.value] += 1
    worst = sorted((r for r in results if r.findings),
                   key=lambda r: max(Severity(s).rank for s in r.findings), reverse=True)
    return {
        "models": len(results), "by_verdict": by_verdict,
        "worst": [{"path": r.path, "verdict": r.verdict.value, "findings": r.top_findings}
                  for r in worst[:10]],
        "slowest": [{"path": r.path, "seconds": r.seconds}
                    for r in sorted(results, key=lambda r: -r.seconds)[:5]],
        "errors": [{"path": r.path, "error": r.error} for r in results if r.error][:20],
        "load_only": sum(1 for r in results if not r.probed),
        "baselines": {"checked": sum(1 for r in results if r.baseline),
                      "drift": [r.path for r in results if r.baseline == "drift"]},
    }


def _print_summary(summary: dict[str, Any], results_path: Path) -> None:
    t = Table(title=f"{summary['models']} model(s); results in {results_path}",
              title_justify="left")
    t.add_column("verdict")
    t.add_column("models", justify="right")
    for verdict, n in summary["by_verdict"].items():
        t.add_row(verdict, str(n))
    out.print(t)
    for w in summary["worst"][:5]:
        out.print(f"worst: {w['verdict']:<10} {w['path']}  {', '.join(w['findings'])}",
                  markup=False, highlight=False)
    for s in summary["slowest"][:3]:
        out.print(f"slowest: {s['seconds']:.1f}s {s['path']}", markup=False, highlight=False)
    b = summary["baselines"]
    if b["checked"]:
        out.print(f"baselines: {b['checked']} checked, {len(b['drift'])} drifted"
                  + "".join(f"\ndrift: {p}" for p in b["drift"]), markup=False,
                  highlight=False)


def _read_report(path: Path) -> Any:
    from pydantic import ValidationError

    from runner.report import Report

    try:
        return Report.model_validate_json(path.read_bytes())
    except FileNotFoundError as e:
        raise UsageError(f"{path}: no such report", "pass a report written by --report") from e
    except ValidationError as e:
        raise UsageError(f"{path} is not an Airlock report ({e.error_count()} problems)",
                         "pass a JSON report written by 'airlock scan|run --report'") from e


ReportIn = Annotated[Path, typer.Argument(help="a JSON report", show_default=False)]
ViewOut = Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of "
                                              "stdout")]


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        _write(output, text)
        err.print(f"wrote {output}", markup=False, highlight=False)


@report_app.command("show")
def report_show(path: ReportIn) -> None:
    """Print the summary of a report."""
    from runner.views.terminal import print_report

    print_report(_read_report(path), out)


@report_app.command("html")
def report_html(path: ReportIn, output: ViewOut = None) -> None:
    """Render a report as a self-contained HTML page."""
    from runner.views import View, render

    _emit(render(_read_report(path), View.HTML), output)


@report_app.command("sarif")
def report_sarif(path: ReportIn, output: ViewOut = None) -> None:
    """Render a report as SARIF 2.1.0 for code-scanning tools."""
    from runner.views import View, render

    _emit(render(_read_report(path), View.SARIF), output)


# --- signatures -----------------------------------------------------------------------------

SignatureOpt = Annotated[Path, typer.Option("--signature", help="the signature file (kept "
                                            "outside the model directory)",
                                            show_default=False)]
ChainOpt = Annotated[list[Path] | None, typer.Option("--chain", help="CA certificate, PEM "
                                                     "(repeat for a chain)",
                                                     show_default=False)]


@app.command("sign")
def sign_cmd(model: ModelArg, signature: SignatureOpt,
             key: Annotated[Path, typer.Option("--key", help="elliptic-curve private key, PEM",
                                               show_default=False)],
             password_env: Annotated[str | None, typer.Option(
                 "--password-env", help="name of the environment variable holding the key's "
                 "password")] = None,
             cert: Annotated[Path | None, typer.Option("--cert", help="signing certificate, "
                                                       "PEM: sign with it instead of a bare "
                                                       "key")] = None,
             chain: ChainOpt = None, json_: JsonOut = False) -> None:
    """Sign MODEL (OpenSSF model signing, file-level sha256) with a key or a certificate."""
    import os

    from runner.integrity import signing as _signing

    password = None
    if password_env:
        if password_env not in os.environ:
            raise UsageError(f"environment variable {password_env} is not set",
                             "export the key's password in it, or drop --password-env")
        password = os.environ[password_env]
    info = _signing.sign(model, signature, private_key=key, password=password,
                         certificate_chain=chain, signing_certificate=cert)
    if json_:
        sys.stdout.write(info.model_dump_json(indent=2) + "\n")
    else:
        out.print(f"signed: {info.files} file(s) of {model} by {info.signer} (root digest "
                  f"{info.root_digest}); signature in {signature}", markup=False,
                  highlight=False)


@app.command("verify")
def verify_cmd(model: ModelArg, signature: SignatureOpt,
               key: Annotated[Path | None, typer.Option("--key", help="trust this public key "
                                                        "(PEM)")] = None,
               chain: ChainOpt = None,
               identity: Annotated[str | None, typer.Option(
                   "--identity", help="with --chain: the signing certificate's email, URI or "
                   "common name")] = None,
               trust_policy: Annotated[Path | None, typer.Option(
                   "--trust-policy", help="TOML trust policy (default: $AIRLOCK_TRUST_POLICY, "
                   "else trust.toml in the user config directory)")] = None,
               json_: JsonOut = False) -> None:
    """Verify MODEL's signature. Exit 0 when verified, 1 when not."""
    from runner.integrity import signing as _signing
    from runner.report import file_digests, root_digest

    trust = _trust(key, chain, identity, trust_policy) or _signing.TrustPolicy.load(
        _signing.default_policy_path())
    if not (model.exists() or model.is_symlink()):
        raise UsageError(f"model {model} not found", "pass a model file or directory")
    check = _signing.verify(model, signature, trust,
                            root_digest(file_digests(model)))
    if json_:
        sys.stdout.write(check.model_dump_json(indent=2) + "\n")
    elif check.verified:
        out.print(f"verified: signed by {check.signer} (root digest {check.manifest_digest})",
                  markup=False, highlight=False)
    else:
        out.print(f"not verified: {check.reason}", markup=False, highlight=False)
    raise typer.Exit(EXIT_OK if check.verified else EXIT_FINDINGS)


@app.command()
def gc(all_: Annotated[bool, typer.Option("--all", help="also remove sandboxes whose owner "
                                          "is still running")] = False) -> None:
    """Remove sandboxes and directories left behind by a controller that was killed."""
    from runner.controller import sessions as _session

    reaped = _session.reap(everything=all_)
    out.print(f"removed {len(reaped.containers)} container(s) and "
              f"{len(reaped.directories)} directory(ies)", markup=False)


@app.command()
def doctor() -> None:
    """Check the engine, the runtimes and the image; print the fix for each problem."""
    from runner.controller import engine as _docker
    from runner.controller import images as _image
    from runner.errors import EngineError

    problems = 0

    def line(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        problems += 0 if ok else 1
        mark = "ok  " if ok else "FAIL"
        out.print(f"{mark} {what}" + ("" if ok else f"\n     fix: {fix}"), markup=False,
                  highlight=False)

    try:
        info = _docker.engine_info()
    except EngineError as e:
        line(False, "Docker engine reachable", e.hint)
        raise typer.Exit(EXIT_ERROR) from None
    line(True, f"Docker engine reachable (server {info.get('ServerVersion', '?')})")
    runtimes = info.get("Runtimes") or {}
    line("runc" in runtimes, "runtime runc registered", "reinstall docker.io")
    runsc = runtimes.get("runsc") or {}
    args = runsc.get("runtimeArgs") or []
    line(bool(runsc), "runtime runsc (gVisor) registered", "run 'make engine'")
    if runsc:
        line(any(a.startswith("--host-uds") for a in args),
             "runsc passes Unix sockets across bind mounts (--host-uds)", "run 'make engine'")
    line(not (info.get("Driver") == "" or info.get("NCPU", 0) < 1), "engine has CPUs")
    st = _image.status()
    line(st.state is _image.ImageState.CURRENT, f"sandbox image: {st.describe()}",
         "run 'airlock image build'")
    raise typer.Exit(EXIT_OK if problems == 0 else EXIT_ERROR)


@app.command()
def version() -> None:
    """Print Airlock's version."""
    out.print(__version__)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()  # usage errors exit 2 with typer's message; commands exit through typer.Exit
    except AirlockError as e:
        if _state["verbose"]:
            traceback.print_exc()
        err.print(f"airlock: error: {e.diagnostics()}", markup=False, highlight=False)
        sys.exit(e.exit_code)
    except SystemExit as e:
        if e.code == 130:  # typer turns KeyboardInterrupt into exit 130, after our cleanup
            err.print("airlock: interrupted; the sandbox was removed", markup=False)
        raise


if __name__ == "__main__":
    main()
