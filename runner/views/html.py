"""A self-contained HTML page for a report: findings, an event timeline, resource plots.

Everything in a report may come from a hostile model: every string is neutralised first
(runner.views.neutral: no control character or bidi override reaches the page) and the template
autoescapes all of it, whatever its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader

from runner.report import Report
from runner.views.neutral import neutralised

_env = Environment(
    loader=PackageLoader("runner.views", "."),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

_env.filters["mib"] = lambda n: "?" if n is None else f"{n / (1 << 20):.1f} MiB"
WIDTH, HEIGHT, PAD = 640, 160, 30
PHASE_COLOURS = {"startup": "#d0d7de", "load": "#fff1c2", "infer": "#d2f4d3", "teardown": "#f0d7ff"}


@dataclass(frozen=True)
class Plot:
    title: str
    unit: str
    points: str  # SVG polyline points
    max_label: str
    bands: list[tuple[float, float, str, str]]  # x, width, colour, phase
    span_s: float


def _plots(report: Report) -> list[Plot]:
    r = report.resources
    if r is None or len(r.timeline) < 2:
        return []
    t0 = r.timeline[0].time
    span = max(r.timeline[-1].time - t0, 1e-3)

    def x(t: float) -> float:
        return PAD + (t - t0) / span * (WIDTH - 2 * PAD)

    bands: list[tuple[float, float, str, str]] = []
    for i, s in enumerate(r.timeline):
        if i == 0 or s.phase != r.timeline[i - 1].phase:
            bands.append((x(s.time), 0.0, PHASE_COLOURS.get(s.phase.value, "#eee"), s.phase.value))
    bands = [
        (bx, (bands[i + 1][0] if i + 1 < len(bands) else WIDTH - PAD) - bx, c, p)
        for i, (bx, _, c, p) in enumerate(bands)
    ]

    def series(values: list[float], title: str, unit: str, fmt: str) -> Plot:
        top = max(max(values), 1e-9)
        pts = " ".join(
            f"{x(s.time):.1f},{HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD):.1f}"
            for s, v in zip(r.timeline, values, strict=True)
        )
        return Plot(title, unit, pts, fmt.format(top), bands, span)

    mem = [s.memory_bytes / (1 << 20) for s in r.timeline]
    cpu = [0.0] + [
        max(0.0, (b.cpu_seconds - a.cpu_seconds) / max(b.time - a.time, 1e-6)) * 100
        for a, b in zip(r.timeline, r.timeline[1:], strict=False)
    ]
    pids = [float(s.pids) for s in r.timeline]
    return [
        series(mem, "Memory", "MiB", "{:.1f} MiB"),
        series(cpu, "CPU", "%", "{:.0f}%"),
        series(pids, "Processes and threads", "", "{:.0f}"),
    ]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    colour: str
    label: str  # the category, under the pair
    tip: str


CHART_H, BAR_W = 200, 14


def _diff_bars(report: Report) -> list[Bar]:
    """Per category: the candidate's flip rate (red when flagged) beside the control's."""
    d = report.behavior
    if d is None or d.kind != "classifier":
        return []
    bars = []
    for i, c in enumerate(d.categories):
        x = PAD + i * (2 * BAR_W + 12)
        for j, (rate, colour, who) in enumerate(
            (
                (c.flip_rate or 0.0, "#cf222e" if c.flagged else "#0969da", "candidate"),
                (c.control_rate or 0.0, "#8c959f", "control"),
            )
        ):
            h = rate * (CHART_H - 2 * PAD)
            bars.append(
                Bar(
                    x + j * BAR_W,
                    CHART_H - PAD - h,
                    h,
                    colour,
                    c.category if j == 0 else "",
                    f"{c.category}: {who} flip rate {rate:.0%}",
                )
            )
    return bars


def render_html(report: Report) -> str:
    report = neutralised(report)  # the one place this view makes the report's text safe
    t0 = report.events[0].time if report.events else 0.0
    if report.resources and report.resources.timeline:
        t0 = report.resources.timeline[0].time
    return _env.get_template("report.html.j2").render(
        r=report,
        plots=_plots(report),
        t0=t0,
        width=WIDTH,
        height=HEIGHT,
        pad=PAD,
        colours=PHASE_COLOURS,
        bars=_diff_bars(report),
        chart_h=CHART_H,
        bar_w=BAR_W,
        chart_w=max(
            WIDTH,
            2 * PAD + len(report.behavior.categories if report.behavior else []) * (2 * BAR_W + 12),
        ),
    )
