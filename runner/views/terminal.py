"""The terminal summary of a report (rich).

Every string in the report is neutralised first (runner.views.neutral: no control character,
escape sequence or bidi override reaches the terminal), and every cell, row and title is a rich
Text, never a string rich would read markup from (a name like "[green]CLEAN[/green]" is shown
as written). Nothing from the model starts a line: every value is one physical line, cut with …
at the terminal's width rather than wrapped, so each line begins with Airlock's own label or a
table border.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.hf.repo import origin
from runner.report import BaselineCheck, BehaviorDiff, Integrity, Report, TensorSpecInfo
from runner.rules.catalog import Verdict
from runner.views.neutral import neutralised

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


def _line(text: str, style: str = "") -> Text:
    """One physical line, cut with … at the width, never wrapped: no text from the model can
    begin a line of its own (the JSON and HTML views have it whole)."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


Row = tuple[str, Text]  # a label and its value, one line of the summary


def _run_rows(report: Report) -> list[Row]:
    """The verdict, the model, and how the run went: sandbox, phases, resources, tracer."""
    m = report.model
    rows = [("verdict", _line(report.verdict.value.upper(), style=_VERDICT_STYLE[report.verdict]))]
    count = f"{len(m.files)} files, " if len(m.files) != 1 else ""
    rows.append(("model", _line(f"{m.path} ({m.format}, {count}{m.size_bytes} bytes)")))
    if len(m.files) == 1:  # the file's own digest: what publishers print
        rows.append(("sha256", _line(m.files[0].sha256)))
    if m.root_digest:
        rows.append(
            (
                "root digest",
                _line(f"{m.root_digest} (OpenSSF model signing: over each file's sha256)"),
            )
        )
    if report.sandbox:
        s = report.sandbox
        rows.append(
            (
                "sandbox",
                _line(f"{s.runtime}, image {s.image} ({s.image_id[:19]}), session {s.session}"),
            )
        )
    rows.append(("phases", _line(" · ".join(f"{p.name} {p.seconds:.3f}s" for p in report.phases))))
    r = report.resources
    if r is not None:
        rows.append(
            (
                "resources",
                _line(
                    f"memory peak {_mib(r.memory_peak_bytes)} of {_mib(r.memory_limit_bytes)}, "
                    f"cpu {r.cpu_seconds or 0:.2f}s, pids max {r.pids_max} of {r.pids_limit}, "
                    f"{len(r.timeline)} samples"
                ),
            )
        )
    if report.tracer is not None:
        tr = report.tracer
        state = (tr.kind or "on") if tr.enabled else "off"  # strace, gvisor, or off
        rows.append(
            (
                "tracer",
                _line(
                    f"{state}, {tr.syscalls} syscalls traced, worker "
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
        rows += [("inputs", _line(_specs(sig.inputs))), ("outputs", _line(_specs(sig.outputs)))]
        if not sig.can_infer:
            rows.append(("inference", _line(f"no: {sig.note}")))
    for o in report.outputs:
        rows.append(("output", _line(f"{o.name} {o.dtype} {o.shape} sha256 {o.sha256[:16]}…")))
    return rows


def _integrity_rows(integ: Integrity) -> list[Row]:
    """What was read statically, the signature check, and the provenance claims."""
    st = integ.static
    rows = [
        (
            "static",
            _line(
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
                _line(
                    f"verified ({signed.method}), signed by {signed.signer}"
                    if signed.verified
                    else f"NOT VERIFIED: {signed.reason}",
                    style="green" if signed.verified else "bold red",
                ),
            )
        )
    elif integ.signature_required:
        rows.append(("signature", _line("required, and missing", style="bold red")))
    prov = integ.provenance
    if prov is not None:
        rows.append(
            (
                "provenance",
                _line(
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


def _hf_rows(report: Report) -> list[Row]:
    """A Hugging Face repository: its name, architectures and task, and the code it runs."""
    hf = report.model.huggingface
    if hf is None:
        return []
    name = (hf.repo_id + (f"@{hf.revision[:12]}" if hf.revision else "")) or "a local repository"
    what = ", ".join(hf.architectures) or hf.model_type or "no architecture named"
    rows = [("hugging face", _line(f"{name}: {what}, task {hf.task or '?'}"))]
    if hf.adapter:
        rows.append(("adapter", _line(", ".join(f"{k} {v}" for k, v in hf.adapter.items()))))
    if hf.remote_code:
        rows.append(("remote code", _line("; ".join(origin(f) for f in hf.auto_map))))
        for c in hf.code_files[:20]:
            what = c.problem or ("imports " + (", ".join(c.imports) or "nothing"))
            rows.append(("code file", _line(f"{c.path} sha256 {c.sha256[:12] or '?'}: {what}")))
    return rows


def _findings_table(report: Report) -> Table:
    t = Table(
        title=_line(f"{len(report.findings)} finding(s)"), title_justify="left", show_lines=False
    )
    # the short columns keep their width; title and evidence share what is left
    for col, width, ratio in (
        ("severity", 8, None),
        ("rule", 5, None),
        ("title", None, 1),
        ("phase", 8, None),
        ("source", 6, None),
        ("evidence", None, 3),
    ):
        t.add_column(col, width=width, ratio=ratio)  # each cell is one line: _line
    for f in report.findings:
        t.add_row(
            _line(f.severity.value, style=_SEVERITY_STYLE[f.severity.value]),
            _line(f.rule_id),
            Text(f.title),  # the catalogue's own title: it may wrap
            _line(f.phase.value if f.phase else "-"),
            _line(f.source.value),
            _line(f.evidence[0] if f.evidence else f.message),
        )
    return t


def print_report(report: Report, console: Console) -> None:
    report = neutralised(report)  # the one place this view makes the report's text safe
    rows = _run_rows(report) + _hf_rows(report) + _tensor_rows(report)
    if report.integrity is not None:
        rows += _integrity_rows(report.integrity)
    rows += [("note", _line(note)) for note in report.notes]
    if report.error:
        rows.append(("error", _line(f"{report.error.kind}: {report.error.message}")))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True, min_width=max(len(label) for label, _ in rows))
    head.add_column(no_wrap=True, overflow="ellipsis")
    for label, value in rows:
        head.add_row(label, value)
    console.print(head)
    console.print(_findings_table(report) if report.findings else _line("no findings"))
    if report.behavior is not None:
        console.print(diff_table(report.behavior))
    if report.baseline is not None:
        console.print(baseline_table(report.baseline))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def diff_table(d: BehaviorDiff) -> Table:
    d = neutralised(d)
    control = {
        "model": f"control model {d.control.path if d.control else ''}",
        "rerun": "control: a second run of the base",
        "pooled": "control: the pooled other categories",
        "category": "control: the probe category 'control'",
    }[d.control_kind]
    t = Table(
        title=_line(
            f"Behaviour against the base {d.base.path} (verdict {d.base.verdict}); "
            f"{control}; output {d.output!r}, {d.rows} probes; flagged: "
            f"{', '.join(d.flagged) or 'none'}"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption=_line(
            "to: the class most flips go to; ctrl: the control's flip rate; JSD: "
            "mean Jensen-Shannon divergence (bits). Intervals, KL, max |Δ| and McNemar p "
            "are in the JSON and HTML reports"
        ),
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
            *map(
                _line,
                (
                    c.category,
                    str(c.rows),
                    "-" if c.flips is None else f"{c.flips} {_pct(c.flip_rate)}",
                    "-" if to is None else f"{to} ({c.flips_to[to]})",
                    _pct(c.control_rate),
                    _num(c.p_adjusted, ".2g"),
                    _num(c.js_mean, ".3f"),
                    acc,
                ),
            ),
            _line("FLAGGED", style="bold red") if c.flagged else _line("-"),
        )
    return t


def baseline_table(b: BaselineCheck) -> Table:
    b = neutralised(b)
    env = "same image and runtime" if b.same_environment else "another image or runtime"
    t = Table(
        title=_line(
            f"Baseline {b.name!r} recorded {b.recorded_at} ({env}): "
            f"{'DRIFT' if b.drift else 'no drift'}, {b.rows_changed} of {b.rows} rows "
            "changed"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("category", "rows", "changed", "flips", "max |Δ|", "flag"):
        t.add_column(col)
    for c in b.categories:
        t.add_row(
            _line(c.category),
            _line(str(c.rows)),
            _line(str(c.changed)),
            _line("-" if c.flips is None else f"{c.flips} ({_pct(c.flip_rate)})"),
            _line(_num(c.max_abs_diff)),
            _line("DRIFT", style="bold red") if c.flagged else _line("-"),
        )
    return t


def render_text(report: Report, width: int = 100) -> str:
    buf = io.StringIO()
    print_report(report, Console(file=buf, width=width, no_color=True, highlight=False))
    return buf.getvalue()
