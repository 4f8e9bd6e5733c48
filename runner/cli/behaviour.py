"""What a model does on probes: diff against its base, baselines recorded and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from runner.cli import options as o
from runner.cli.output import exit_code, note, out, save_report, show, shown, write, write_bom
from runner.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from runner.policy import Runtime

if TYPE_CHECKING:
    from runner.behaviour.diff import DiffOutcome
    from runner.rules.catalog import Severity

Base = Annotated[
    Path,
    typer.Option(
        "--base", help="the base model the candidate claims to derive from", show_default=False
    ),
]
Candidate = Annotated[
    Path, typer.Option("--candidate", help="the model under test", show_default=False)
]
Control = Annotated[
    Path | None,
    typer.Option("--control", help="a benign fine-tune of the same base, as the control"),
]
NoRerun = Annotated[
    bool,
    typer.Option(
        "--no-rerun",
        help="without --control, use the pooled "
        "other categories instead of a second run of the base",
    ),
]
DiffOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="write candidate.json, base.json, control.json, diff.html and candidate.cdx.json here",
    ),
]
Alpha = Annotated[float, typer.Option("--alpha", help="false discovery rate")]
Target = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="text probes, causal LMs: the string a backdoor would make the model write; "
        "the rate of generations containing it is compared",
    ),
]
Generate = Annotated[
    int | None,
    typer.Option("--generate", help="with --target: tokens generated a probe (default 16)"),
]
MinEffect = Annotated[
    float, typer.Option("--min-effect", help="flip rate over the control's needed to flag (0-1)")
]
RecordName = Annotated[
    str | None,
    typer.Option(
        "--name", help="the baseline's name (default: the model's file or directory name)"
    ),
]
CheckName = Annotated[
    str | None,
    typer.Option("--name", help="the baseline to check against (default: the model's name)"),
]
Tolerance = Annotated[
    float, typer.Option("--tolerance", help="allowed difference on another image or runtime")
]


def _save_diff(outcome: DiffOutcome, out_dir: Path) -> None:
    from runner.views import View, render

    report = outcome.candidate
    save_report(report, out_dir / "candidate.json")
    save_report(outcome.base, out_dir / "base.json")
    if outcome.control is not None:
        save_report(outcome.control, out_dir / "control.json")
    write(out_dir / "diff.html", render(report, View.HTML))
    write_bom(report, out_dir / "candidate.cdx.json")
    note(f"reports in {out_dir}/")


def diff_(
    base: Base,
    candidate: Candidate,
    probes: o.ProbesOpt,
    control: Control = None,
    no_rerun: NoRerun = False,
    out_dir: DiffOut = None,
    output: o.OutputName = None,
    alpha: Alpha = 0.05,
    min_effect: MinEffect = 0.15,
    target: Target = None,
    generate: Generate = None,
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    cpus: o.Cpus = o.CPUS,
    load_timeout: o.LoadTimeout = o.LOAD_TIMEOUT,
    call_timeout: o.CallTimeout = o.CALL_TIMEOUT,
    no_trace: o.NoTrace = False,
    json_: o.JsonOut = False,
    fail_on: o.FailOn = o.FAIL_ON,
) -> None:
    """Compare a candidate with its base model on probes, each in its own sandbox. Text
    probes (probes.jsonl) compare Hugging Face classifiers and causal language models."""
    from runner.behaviour.diff import diff
    from runner.behaviour.diff_text import diff_text
    from runner.behaviour.probes_text import is_text_probes

    policy = o.policy(
        runtime,
        memory,
        cpus=cpus,
        load_timeout=load_timeout,
        call_timeout=call_timeout,
        no_trace=no_trace,
    )
    rerun = not no_rerun
    if is_text_probes(probes):
        if output is not None:
            raise UsageError("--output is for array probes", "text probes compare by task")
        outcome = diff_text(
            base, candidate, probes, control=control, rerun=rerun, policy=policy, alpha=alpha,
            min_effect=min_effect, target=target, generate=generate, progress=note,
        )  # fmt: skip
    elif target is not None or generate is not None:
        raise UsageError("--target and --generate are for text probes", "pass a probes.jsonl file")
    else:
        outcome = diff(
            base, candidate, probes, control=control, rerun=rerun, output=output,
            policy=policy, alpha=alpha, min_effect=min_effect, progress=note,
        )  # fmt: skip
    report = outcome.candidate
    if out_dir is not None:
        _save_diff(outcome, out_dir)
    show(report, json_)
    raise typer.Exit(_diff_exit(outcome, fail_on))


def _diff_exit(outcome: DiffOutcome, fail_on: Severity) -> int:
    """The candidate's exit code, or findings when only the base model has some."""
    code = exit_code(outcome.candidate, fail_on)
    if (
        code == EXIT_OK
        and outcome.base.findings
        and any(f.severity.rank >= fail_on.rank for f in outcome.base.findings)
    ):
        note(f"the base model has findings of its own (verdict {outcome.base.verdict})")
        code = EXIT_FINDINGS
    return code


def baseline_record(
    model: o.ModelArg,
    probes: o.ProbesOpt,
    name: RecordName = None,
    registry: o.RegistryOpt = None,
    output: o.OutputName = None,
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    no_trace: o.NoTrace = False,
    report: o.ReportOut = None,
) -> None:
    """Run MODEL on the probes in a sandbox and store what it did as a baseline."""
    from runner.behaviour import baseline

    policy = o.policy(runtime, memory, no_trace=no_trace)
    rep, entry = baseline.record(
        model, probes, name=name, registry=registry, policy=policy, output=output
    )
    if report is not None:
        save_report(rep, report)
    reg = baseline.Registry(registry).path
    out.print(
        f"recorded baseline {entry.name!r}: {entry.rows} probes, output "
        f"{entry.output!r}, model {entry.model_root[:16]}…, {entry.runtime} on image "
        f"{entry.image_id[:19]}, in {reg}",
        markup=False,
        highlight=False,
    )
    if rep.findings:
        note(
            f"note: the model's run had findings (verdict {rep.verdict}); the baseline "
            "records them as they are"
        )


def baseline_check(
    model: o.ModelArg,
    probes: o.ProbesOpt,
    name: CheckName = None,
    registry: o.RegistryOpt = None,
    tolerance: Tolerance = 1e-4,
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    no_trace: o.NoTrace = False,
    json_: o.JsonOut = False,
    report: o.ReportOut = None,
    fail_on: o.FailOn = o.FAIL_ON,
) -> None:
    """Rerun MODEL on the probes and compare with its baseline; drift is a finding."""
    from runner.behaviour import baseline

    policy = o.policy(runtime, memory, no_trace=no_trace)
    rep = baseline.check(
        model, probes, name=name, registry=registry, policy=policy, tolerance=tolerance
    )
    show(rep, json_, report)
    raise typer.Exit(exit_code(rep, fail_on))


def baseline_list(registry: o.RegistryOpt = None, json_: o.JsonOut = False) -> None:
    """List the recorded baselines."""
    from dataclasses import asdict

    from runner.behaviour import baseline

    entries = baseline.Registry(registry).entries()
    if json_:
        out.print_json(
            json.dumps([{k: v for k, v in asdict(e).items() if k != "summary"} for e in entries])
        )
        return
    t = Table(
        title=Text(f"{len(entries)} baseline(s) in {shown(baseline.Registry(registry).path)}"),
        title_justify="left",
    )
    for col in ("name", "probes", "rows", "model", "runtime", "image", "recorded"):
        t.add_column(col)
    for e in entries:  # the registry is a file on disk: its text is shown, never read as markup
        cells = (
            e.name,
            e.probes_digest[:12],
            str(e.rows),
            e.model_root[:12],
            e.runtime,
            e.image_id[7:19],
            e.recorded_at,
        )
        t.add_row(*(Text(shown(c, 200)) for c in cells))
    out.print(t)
