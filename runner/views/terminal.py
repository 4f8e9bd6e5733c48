"""The terminal summary of a report (rich)."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.report import BaselineCheck, BehaviorDiff, Integrity, Report, TensorSpecInfo
from runner.rules.catalog import Verdict

_VERDICT_STYLE = {
    Verdict.CLEAN: "bold green",
    Verdict.SUSPICIOUS: "bold yellow",
    Verdict.MALICIOUS: "bold red",
    Verdict.ERROR: "bold magenta",
}
_SEVERITY_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 20):.1f} MiB"


Row = tuple[str, Text]  # a label and its value, one line of the summary


def _run_rows(report: Report) -> list[Row]:
    """The verdict, the model, and how the run went: sandbox, phases, resources, tracer."""
    m = report.model
    rows = [("verdict", Text(report.verdict.value.upper(), style=_VERDICT_STYLE[report.verdict]))]
    digest = (m.root_digest or (m.files[0].sha256 if m.files else "?"))[:16] + "…"
    rows.append(("model", Text(f"{m.path} ({m.format}, {m.size_bytes} bytes, sha256 {digest})")))
    if report.sandbox:
        s = report.sandbox
        rows.append(
            (
                "sandbox",
                Text(f"{s.runtime}, image {s.image} ({s.image_id[:19]}), session {s.session}"),
            )
        )
    rows.append(("phases", Text(" · ".join(f"{p.name} {p.seconds:.3f}s" for p in report.phases))))
    r = report.resources
    if r is not None:
        rows.append(
            (
                "resources",
                Text(
                    f"memory peak {_mib(r.memory_peak_bytes)} of {_mib(r.memory_limit_bytes)}, "
                    f"cpu {r.cpu_seconds or 0:.2f}s, pids max {r.pids_max} of {r.pids_limit}, "
                    f"{len(r.timeline)} samples"
                ),
            )
        )
    if report.tracer is not None:
        tr = report.tracer
        rows.append(
            (
                "tracer",
                Text(
                    f"{'on' if tr.enabled else 'off'}, {tr.syscalls} syscalls traced, worker "
                    f"{tr.worker_exit or 'exit not recorded'}"
                ),
            )
        )
    return rows


def _specs(items: list[TensorSpecInfo]) -> str:
    return ", ".join(f"{s.name} {s.dtype or '?'} {s.shape or '?'}" for s in items) or "-"


def _tensor_rows(report: Report) -> list[Row]:
    """The model's signature (inputs, outputs, whether it can infer) and the outputs seen."""
    rows: list[Row] = []
    sig = report.signature
    if sig is not None:
        rows += [("inputs", Text(_specs(sig.inputs))), ("outputs", Text(_specs(sig.outputs)))]
        if not sig.can_infer:
            rows.append(("inference", Text(f"no: {sig.note}")))
    for o in report.outputs:
        rows.append(("output", Text(f"{o.name} {o.dtype} {o.shape} sha256 {o.sha256[:16]}…")))
    return rows


def _integrity_rows(integ: Integrity) -> list[Row]:
    """What was read statically, the signature check, and the provenance claims."""
    st = integ.static
    rows = [
        (
            "static",
            Text(
                f"read in {st.seconds:.3f}s (bounds {st.bounds}); {len(st.imports)} pickle "
                f"import(s)" + (f"; DID NOT FINISH: {st.aborted}" if st.aborted else "")
            ),
        )
    ]
    signed = integ.signature
    if signed is not None:
        rows.append(
            (
                "signature",
                Text(
                    f"verified ({signed.method}), signed by {signed.signer}"
                    if signed.verified
                    else f"NOT VERIFIED: {signed.reason}",
                    style="green" if signed.verified else "bold red",
                ),
            )
        )
    elif integ.signature_required:
        rows.append(("signature", Text("required, and missing", style="bold red")))
    prov = integ.provenance
    if prov is not None:
        rows.append(
            (
                "provenance",
                Text(
                    f"{len(prov.claims)} claim(s) from {prov.source}: "
                    + ", ".join(
                        f"{c.field} {c.status}"
                        for c in prov.claims
                        if c.status != "claimed" or c.field.endswith("digest")
                    )
                    or f"{len(prov.claims)} claim(s) from {prov.source}"
                ),
            )
        )
    return rows


def _findings_table(report: Report) -> Table:
    t = Table(title=f"{len(report.findings)} finding(s)", title_justify="left", show_lines=False)
    for col in ("severity", "rule", "title", "phase", "source", "evidence"):
        t.add_column(col, overflow="fold")
    for f in report.findings:
        t.add_row(
            Text(f.severity.value, style=_SEVERITY_STYLE[f.severity.value]),
            f.rule_id,
            f.title,
            f.phase.value if f.phase else "-",
            f.source.value,
            Text(f.evidence[0] if f.evidence else f.message),
        )
    return t


def print_report(report: Report, console: Console) -> None:
    rows = _run_rows(report) + _tensor_rows(report)
    if report.integrity is not None:
        rows += _integrity_rows(report.integrity)
    rows += [("note", Text(note)) for note in report.notes]
    if report.error:
        rows.append(("error", Text(f"{report.error.kind}: {report.error.message}")))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in rows:
        head.add_row(label, value)
    console.print(head)
    console.print(_findings_table(report) if report.findings else "no findings")
    if report.behavior is not None:
        console.print(diff_table(report.behavior))
    if report.baseline is not None:
        console.print(baseline_table(report.baseline))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def diff_table(d: BehaviorDiff) -> Table:
    control = {
        "model": f"control model {d.control.path if d.control else ''}",
        "rerun": "control: a second run of the base",
        "pooled": "control: the pooled other categories",
    }[d.control_kind]
    t = Table(
        title=f"Behaviour against the base {d.base.path} (verdict {d.base.verdict}); "
        f"{control}; output {d.output!r}, {d.rows} probes; flagged: "
        f"{', '.join(d.flagged) or 'none'}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="to: the class most flips go to; ctrl: the control's flip rate; JSD: "
        "mean Jensen-Shannon divergence (bits). Intervals, KL, max |Δ| and McNemar p "
        "are in the JSON and HTML reports",
        caption_justify="left",
    )
    for col in ("category", "n", "flips", "to", "ctrl", "p (BH)", "JSD", "accuracy", "flag"):
        t.add_column(col, no_wrap=True)
    for c in d.categories:
        to = next(iter(c.flips_to), None)
        acc = (
            "-" if c.base_accuracy is None else f"{c.base_accuracy:.0%}→{c.candidate_accuracy:.0%}"
        )
        t.add_row(
            c.category,
            str(c.rows),
            "-" if c.flips is None else f"{c.flips} {_pct(c.flip_rate)}",
            "-" if to is None else f"{to} ({c.flips_to[to]})",
            _pct(c.control_rate),
            _num(c.p_adjusted, ".2g"),
            _num(c.js_mean, ".3f"),
            acc,
            Text("FLAGGED", style="bold red") if c.flagged else Text("-"),
        )
    return t


def baseline_table(b: BaselineCheck) -> Table:
    env = "same image and runtime" if b.same_environment else "another image or runtime"
    t = Table(
        title=f"Baseline {b.name!r} recorded {b.recorded_at} ({env}): "
        f"{'DRIFT' if b.drift else 'no drift'}, {b.rows_changed} of {b.rows} rows "
        "changed",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("category", "rows", "changed", "flips", "max |Δ|", "flag"):
        t.add_column(col)
    for c in b.categories:
        t.add_row(
            c.category,
            str(c.rows),
            str(c.changed),
            "-" if c.flips is None else f"{c.flips} ({_pct(c.flip_rate)})",
            _num(c.max_abs_diff),
            Text("DRIFT", style="bold red") if c.flagged else Text("-"),
        )
    return t


def render_text(report: Report, width: int = 100) -> str:
    buf = io.StringIO()
    print_report(report, Console(file=buf, width=width, no_color=True, highlight=False))
    return buf.getvalue()
