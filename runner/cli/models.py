"""One model at a time: run, scan, preflight, describe."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from runner.cli import options as o
from runner.cli.output import (
    ErrorAfterReport,
    exit_code,
    out,
    save_report_or_error,
    show,
    shown,
)
from runner.cli.text_ask import Generate, TextAsk, Texts
from runner.controller.exercise import SECONDS
from runner.errors import (
    EXIT_FINDINGS,
    EXIT_OK,
    AirlockError,
    IntegrityError,
    UsageError,
)
from runner.policy import Policy, Runtime
from runner.rules.catalog import Severity

if TYPE_CHECKING:
    from runner.controller.sandbox import Sandbox
    from runner.report import Report
    from runner.static.preflight import SigningOptions

Inputs = Annotated[
    list[str] | None,
    typer.Option(
        "--input", "-i", help="NAME=FILE.npy, or FILE.npy for a single-input model, or FILE.npz"
    ),
]
OutputDir = Annotated[
    Path | None, typer.Option("--output-dir", help="write one .npy per output here")
]


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
            raise UsageError(
                f"--input {spec!r}: with several inputs, name each one",
                "use --input NAME=FILE.npy (or one .npz)",
            )
        arr = _read_array_file(Path(file))
        if isinstance(arr, dict):
            raise UsageError(
                f"--input {spec!r}: a .npz holds several arrays", "pass it without a name"
            )
        feed[name] = arr
    return feed


def _read_array_file(path: Path) -> dict[str, Any] | np.ndarray:
    from runner.behaviour.probes import load_arrays

    if not path.is_file():
        raise UsageError(f"input file {path} not found", "check the --input path")
    try:
        return load_arrays(path)
    except ValueError as e:
        raise UsageError(
            f"input file {path} is not a .npy or .npz array file ({e})",
            "save inputs with numpy.save or numpy.savez",
        ) from e


ExerciseSeconds = Annotated[
    float,
    typer.Option(
        "--exercise-seconds",
        min=0.0,
        max=600.0,
        help="after loading, call the model with inputs built from its signature for up to "
        "this long (0: load only)",
    ),
]


def _open_and_infer(
    sb: Sandbox,
    feed: dict[str, Any] | np.ndarray | TextAsk | None,
    exercise_s: float = 0.0,
) -> tuple[dict[str, np.ndarray], BaseException | None]:
    """The outputs, and what stopped the run, whatever it was (its report still tells the
    rest, and is written before anything is raised). With no inputs and exercise_s > 0, the
    model is exercised with inputs built from its signature (scan)."""
    outputs: dict[str, np.ndarray] = {}
    try:
        with sb:
            if isinstance(feed, TextAsk):
                outputs = feed.ask(sb)
            elif feed is not None:
                outputs = sb.infer(feed)
            elif exercise_s > 0:
                sb.exercise(seconds=exercise_s)
    except BaseException as e:  # Ctrl-C and bugs too: raised once the report is written
        return outputs, e
    return outputs, None


MAX_FILE_STEM = 100


def output_files(names: list[str]) -> list[str]:
    """A file name for each output, in order: its name's safe characters (the name came from
    the model), bounded, and never the same twice."""
    files: list[str] = []
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:MAX_FILE_STEM].lstrip(".") or "output"
        candidate, n = f"{stem}.npy", 1
        while candidate in files:
            n += 1
            candidate = f"{stem}-{n}.npy"
        files.append(candidate)
    return files


def _save_outputs(outputs: dict[str, np.ndarray], output_dir: Path | None) -> UsageError | None:
    """Write one .npy per output; the error, if one could not be written."""
    if output_dir is None or not outputs:
        return None
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for file, arr in zip(output_files(list(outputs)), outputs.values(), strict=True):
            np.save(output_dir / file, arr)
    except OSError as e:
        return UsageError(f"cannot write the outputs in {shown(output_dir)}: {e.strerror}")
    return None


def _print_outputs(outputs: dict[str, np.ndarray], brief: tuple[str, ...] = ()) -> None:
    """Each output's values; those named in `brief` by dtype and shape only."""
    with np.printoptions(precision=4, threshold=20, edgeitems=3):
        for name, arr in outputs.items():  # the model's name: never a line, or a wrap, of its own
            if name in brief:
                out.print(f"output {shown(name, 60)}: {arr.dtype} {list(arr.shape)}")
            else:
                out.print(f"output {shown(name, 60)} =\n{arr}")


def _feed(
    model: Path,
    arch: Path | None,
    inputs: list[str] | None,
    texts: list[str] | None,
    generate: int,
    fmt: str = "auto",
) -> dict[str, Any] | np.ndarray | TextAsk | None:
    """What the run feeds the model: arrays (--input), texts (--text), or nothing."""
    if texts and inputs:
        raise UsageError("give --text or --input, not both", "texts are tokenised in the sandbox")
    if generate and not texts:
        raise UsageError("--generate needs a prompt", "pass it with --text PROMPT")
    if texts:
        ask = TextAsk(texts, generate)
        ask.check(model, arch, fmt)
        return ask
    return _load_inputs(inputs) if inputs else None


def _failure_code(failure: BaseException, report: Report, fail_on: Severity) -> int:
    if isinstance(failure, IntegrityError):
        return failure.exit_code
    code = exit_code(report, fail_on)
    if isinstance(failure, UsageError) and code == EXIT_OK:
        return failure.exit_code
    return code


def run_model(
    model: Path,
    policy: Policy,
    arch: Path | None,
    fmt: str,
    inputs: list[str] | None,
    output_dir: Path | None,
    as_json: bool,
    report_path: Path | None,
    fail_on: Severity,
    signing: SigningOptions | None = None,
    bom: Path | None = None,
    exercise_s: float = 0.0,
    trust_remote_code: bool = False,
    texts: list[str] | None = None,
    generate: int = 0,
    loading: o.Loading | None = None,
) -> int:
    """Open MODEL in a sandbox (and infer on the inputs), show the report; the exit code.
    The report is written to report_path whatever happened (an error, a bug, Ctrl-C); an
    error after which there is a report to show is raised once the report is shown."""
    from runner.controller.sandbox import Sandbox

    feed = _feed(model, arch, inputs, texts, generate, fmt)
    loading = loading or o.Loading()
    from runner.hf.base import cached_base
    from runner.static.weights import check_usage

    base = loading.base or cached_base(model)  # an adapter's base, from the cache
    check_usage(model, arch, fmt, feed is not None, base)  # before a sandbox starts
    if inputs and feed is not None and not isinstance(feed, TextAsk):
        from runner.static.inputs import check_feed

        check_feed(model, fmt, inputs, feed)  # an ONNX graph's input names, ranks, dtypes
    sb = Sandbox(
        model,
        policy,
        architecture=arch,
        format=fmt,
        signing=signing,
        trust_remote_code=trust_remote_code,
        **loading.sandbox_kwargs(),
    )
    outputs, failure = _open_and_infer(sb, feed, exercise_s)
    report = sb.report()  # never raises
    unwritten = save_report_or_error(report, report_path)
    if failure is not None and not isinstance(failure, AirlockError):
        raise failure  # Ctrl-C, or a bug: the report is written, the boundary says the rest
    if report.sandbox is None and failure is not None and not isinstance(failure, IntegrityError):
        raise failure  # nothing ran (engine or image problem): a plain error line
    show(report, as_json, None, bom)
    if not as_json:
        if isinstance(feed, TextAsk):
            feed.show()
        _print_outputs(outputs, brief=("last_hidden_state",) if isinstance(feed, TextAsk) else ())
    failure = failure or unwritten or _save_outputs(outputs, output_dir)
    if failure is not None:
        raise ErrorAfterReport(failure, _failure_code(failure, report, fail_on))
    return exit_code(report, fail_on)


def run(
    model: o.ModelArg,
    input: Inputs = None,
    output_dir: OutputDir = None,
    arch: o.Arch = None,
    format: o.Fmt = "auto",
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    cpus: o.Cpus = o.CPUS,
    load_timeout: o.LoadTimeout = o.LOAD_TIMEOUT,
    call_timeout: o.CallTimeout = o.CALL_TIMEOUT,
    wall_timeout: o.WallTimeout = o.WALL_TIMEOUT,
    no_trace: o.NoTrace = False,
    json_: o.JsonOut = False,
    report: o.ReportOut = None,
    fail_on: o.FailOn = o.FAIL_ON,
    signature: o.SigOpt = None,
    require_signature: o.RequireSig = False,
    trust_policy: o.TrustPolicyOpt = None,
    key: o.TrustKey = None,
    bom: o.BomOut = None,
    trust_remote_code: o.TrustRemoteCode = False,
    text: Texts = None,
    generate: Generate = 0,
    state_key: o.StateKey = "",
    non_strict: o.NonStrict = False,
    base: o.BaseDir = None,
) -> None:
    """Load MODEL in a sandbox and run inference on the given inputs (arrays, or texts for a
    Hugging Face repository)."""
    # long function: one parameter per command-line option, passed on
    if not input and not text:
        raise UsageError(
            "run needs inputs: --input NAME=FILE.npy, or --text TEXT for a Hugging Face repository",
            "use 'airlock scan' to load a model without inputs of yours",
        )
    policy = o.policy(
        runtime,
        memory,
        cpus=cpus,
        load_timeout=load_timeout,
        call_timeout=call_timeout,
        wall_timeout=wall_timeout,
        no_trace=no_trace,
    )
    signing = o.signing(signature, require_signature, trust_policy, key)
    raise typer.Exit(
        run_model(
            model,
            policy,
            arch,
            format,
            input,
            output_dir,
            json_,
            report,
            fail_on,
            signing,
            bom,
            trust_remote_code=trust_remote_code,
            texts=text,
            generate=generate,
            loading=o.Loading(state_key, non_strict, base),
        )
    )


def scan(
    model: o.ModelArg,
    arch: o.Arch = None,
    format: o.Fmt = "auto",
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    cpus: o.Cpus = o.CPUS,
    load_timeout: o.LoadTimeout = o.LOAD_TIMEOUT,
    wall_timeout: o.WallTimeout = o.WALL_TIMEOUT,
    no_trace: o.NoTrace = False,
    json_: o.JsonOut = False,
    report: o.ReportOut = None,
    fail_on: o.FailOn = o.FAIL_ON,
    signature: o.SigOpt = None,
    require_signature: o.RequireSig = False,
    trust_policy: o.TrustPolicyOpt = None,
    key: o.TrustKey = None,
    bom: o.BomOut = None,
    exercise_seconds: ExerciseSeconds = SECONDS,
    state_key: o.StateKey = "",
    non_strict: o.NonStrict = False,
    base: o.BaseDir = None,
) -> None:
    """Load MODEL in a sandbox, then call it with inputs built from its declared signature for a
    few seconds (none of yours): what do loading and calling it do?"""
    policy = o.policy(
        runtime,
        memory,
        cpus=cpus,
        load_timeout=load_timeout,
        wall_timeout=wall_timeout,
        no_trace=no_trace,
    )
    signing = o.signing(signature, require_signature, trust_policy, key)
    raise typer.Exit(
        run_model(
            model,
            policy,
            arch,
            format,
            None,
            None,
            json_,
            report,
            fail_on,
            signing,
            bom,
            exercise_s=exercise_seconds,
            trust_remote_code=True,  # a scan runs the repository's code: see what it does
            loading=o.Loading(state_key, non_strict, base),
        )
    )


def preflight(
    model: o.ModelArg,
    json_: o.JsonOut = False,
    report: o.ReportOut = None,
    fail_on: o.FailOn = o.FAIL_ON,
    signature: o.SigOpt = None,
    require_signature: o.RequireSig = False,
    trust_policy: o.TrustPolicyOpt = None,
    key: o.TrustKey = None,
    bom: o.BomOut = None,
) -> None:
    """Read MODEL's bytes only, starting nothing: manifest, format, the imports its pickles
    would perform, signs of tampering, signature and provenance. No Docker needed."""
    from runner.controller.sandbox import Sandbox

    signing = o.signing(signature, require_signature, trust_policy, key)
    rep = Sandbox(model, signing=signing).preflight_report()
    from runner.static.inputs import inputs_note

    note = inputs_note(model)  # an ONNX graph's inputs, read from its bytes
    if note is not None:
        rep = rep.model_copy(update={"notes": [*rep.notes, note]})
    show(rep, json_, report, bom)
    if rep.error is not None:  # a required signature is missing or fails: nothing ran
        raise ErrorAfterReport(IntegrityError(rep.error.message, rep.error.hint), EXIT_FINDINGS)
    raise typer.Exit(exit_code(rep, fail_on))


def describe(
    model: o.ModelArg,
    arch: o.Arch = None,
    format: o.Fmt = "auto",
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    load_timeout: o.LoadTimeout = o.LOAD_TIMEOUT,
    json_: o.JsonOut = False,
    trust_remote_code: o.TrustRemoteCode = False,
    state_key: o.StateKey = "",
    non_strict: o.NonStrict = False,
    base: o.BaseDir = None,
) -> None:
    """Print MODEL's inputs and outputs (it is loaded in a sandbox to find them)."""
    policy = o.policy(runtime, memory, load_timeout=load_timeout)
    raise typer.Exit(
        run_model(
            model,
            policy,
            arch,
            format,
            None,
            None,
            json_,
            None,
            Severity.CRITICAL,
            trust_remote_code=trust_remote_code,
            loading=o.Loading(state_key, non_strict, base),
        )
    )
