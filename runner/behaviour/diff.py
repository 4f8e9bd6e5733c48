"""Behavioural diffing: run a base model and a candidate (a fine-tune that claims to derive from
it), each in its own sandbox, on the same probes, and flag the probe categories where the
candidate's behaviour deviates significantly.

    outcome = runner.behaviour.diff("base.onnx", "finetune.onnx", "probes.npz")
    outcome.candidate.behavior.flagged     # e.g. ["trigger"]

Per category: the top-1 flip rate and where the flips go, mean Jensen-Shannon divergence with
a bootstrap 95% interval, mean KL, the largest absolute difference, and the change in accuracy
with an exact McNemar test when the probes carry labels. A category is flagged when its flip
count is significantly above the control's (one-sided exact test, Benjamini-Hochberg across
categories) and its flip rate exceeds the control's by at least `min_effect`. Controls, best
first: a control model (a benign fine-tune of the same base), the probe category named
"control" (benign probes), a second run of the base (the noise floor), or the pooled other
categories (Fisher's exact test).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runner.behaviour import probes as _probes
from runner.behaviour.probes_text import CONTROL as CONTROL_CATEGORY
from runner.errors import AirlockError, SandboxError, UsageError
from runner.integrity.provenance_claims import provenance_for
from runner.policy import Policy
from runner.report import BehaviorDiff, CategoryDiff, ModelRef, Report
from runner.rules.catalog import Finding, RuleName
from runner.rules.evaluation import finding

ALPHA = 0.05
MIN_EFFECT = 0.15
_EPS = 1e-12


# --- statistics ----------------------------------------------------------------------------------


def as_probabilities(out: np.ndarray) -> np.ndarray | None:
    """Rows of class probabilities for classifier-like output ([rows, classes >= 2]): used as
    they are when they already are probabilities, through a softmax when they are logits."""
    from scipy.special import softmax

    if out.ndim != 2 or out.shape[1] < 2 or not np.issubdtype(out.dtype, np.floating):
        return None
    x = out.astype(np.float64)
    if not np.all(np.isfinite(x)):
        return None
    if x.min() >= 0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-3):
        return x
    return np.asarray(softmax(x, axis=1))


def top1(out: np.ndarray) -> np.ndarray | None:
    """Predicted class per row: argmax of scores, or the value itself for integer labels."""
    if out.ndim == 2 and out.shape[1] >= 2:
        return np.asarray(out.argmax(axis=1))
    if out.ndim == 1 and np.issubdtype(out.dtype, np.integer):
        return out
    return None


def divergences(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row Jensen-Shannon divergence and KL(p || q), in bits."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy

    p = np.clip(p, _EPS, None)
    q = np.clip(q, _EPS, None)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    js = np.asarray(jensenshannon(p, q, base=2, axis=1)) ** 2
    kl = np.asarray(entropy(p, q, base=2, axis=1))
    return js, kl


def mean_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean with a percentile-bootstrap 95% interval (the mean itself for fewer than 2 rows or
    no spread)."""
    from scipy.stats import bootstrap

    m = float(np.mean(values))
    if len(values) < 2 or np.ptp(values) == 0:
        return m, m, m
    res = bootstrap(
        (values,),
        np.mean,
        confidence_level=0.95,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
        batch=100,
    )
    return m, float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar_exact(base_right: np.ndarray, cand_right: np.ndarray) -> float:
    """Two-sided exact McNemar test: a binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    b = int(np.sum(base_right & ~cand_right))
    c = int(np.sum(~base_right & cand_right))
    return 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)


def flip_test(flips: int, rows: int, control_flips: int, control_rows: int) -> float:
    """One-sided Fisher's exact test: are the flips more frequent than in the control?"""
    from scipy.stats import fisher_exact

    if rows == 0:
        return 1.0
    table = [[flips, rows - flips], [control_flips, control_rows - control_flips]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def adjust(pvalues: list[float]) -> list[float]:
    from scipy.stats import false_discovery_control

    if not pvalues:
        return []
    return [float(p) for p in false_discovery_control(pvalues, method="bh")]


ControlKind = Literal["model", "rerun", "pooled", "category"]


def control_flips(
    m: np.ndarray,
    flipped: np.ndarray,
    ctrl_flipped: np.ndarray | None,
    kind: ControlKind,
    ctrl_rows: np.ndarray | None = None,
) -> tuple[int, int]:
    """The control's flips and rows for the category `m`: the other categories' when pooled,
    the control category's (`ctrl_rows`; none for that category itself), else the control's
    own on these rows (none without a control)."""
    if kind == "pooled":
        return int(flipped[~m].sum()), int((~m).sum())
    if kind == "category":
        if ctrl_rows is None or np.array_equal(m, ctrl_rows):
            return 0, 0
        return int(flipped[ctrl_rows].sum()), int(ctrl_rows.sum())
    if ctrl_flipped is not None:
        return int(ctrl_flipped[m].sum()), int(m.sum())
    return 0, 0


def _flip_stats(
    m: np.ndarray,
    flipped: np.ndarray,
    cand_top: np.ndarray,
    ctrl_flipped: np.ndarray | None,
    kind: ControlKind,
    ctrl_rows: np.ndarray | None = None,
) -> dict[str, Any]:
    """The category's top-1 flips, where they go, and the test against the control's."""
    n = int(m.sum())
    k = int(flipped[m].sum())
    to = Counter(str(v) for v in cand_top[m][flipped[m]])
    stats: dict[str, Any] = {"flips": k, "flip_rate": k / n, "flips_to": dict(to.most_common())}
    k_ctrl, n_ctrl = control_flips(m, flipped, ctrl_flipped, kind, ctrl_rows)
    if n_ctrl:
        stats.update(
            control_flips=k_ctrl,
            control_rows=n_ctrl,
            control_rate=k_ctrl / n_ctrl,
            p_value=flip_test(k, n, k_ctrl, n_ctrl),
        )
    return stats


def _divergence_stats(pb: np.ndarray, pc: np.ndarray) -> dict[str, Any]:
    """Mean Jensen-Shannon divergence and KL of the category's probabilities, with intervals."""
    js, kl = divergences(pb, pc)
    stats: dict[str, Any] = {}
    stats["js_mean"], stats["js_low"], stats["js_high"] = mean_interval(js)
    stats["kl_mean"], stats["kl_low"], stats["kl_high"] = mean_interval(kl)
    return stats


def _accuracy_stats(labels: np.ndarray, tb: np.ndarray, tc: np.ndarray) -> dict[str, Any]:
    """The category's accuracy for the base and the candidate, and McNemar's test of the two."""
    br, cr = tb == labels, tc == labels
    return {
        "base_accuracy": float(br.mean()),
        "candidate_accuracy": float(cr.mean()),
        "mcnemar_p": mcnemar_exact(br, cr),
    }


def compare(
    base: np.ndarray,
    cand: np.ndarray,
    categories: np.ndarray,
    labels: np.ndarray | None,
    control: np.ndarray | None,
    control_kind: ControlKind,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> tuple[Literal["classifier", "regression"], list[CategoryDiff]]:
    """Compare the candidate's outputs with the base's, category by category. `control` is
    the control's outputs on the same probes (a control model's, or the base's second run);
    None with control_kind "pooled"."""
    if base.shape != cand.shape:
        raise UsageError(
            f"the base's output has shape {list(base.shape)} and the candidate's "
            f"{list(cand.shape)}",
            "compare models with the same outputs",
        )
    pb, pc = as_probabilities(base), as_probabilities(cand)
    tb, tc = top1(base), top1(cand)
    kind: Literal["classifier", "regression"] = "classifier" if tb is not None else "regression"
    t_ctrl = top1(control) if control is not None else None
    flipped = (tb != tc) if tb is not None and tc is not None else None
    ctrl_flipped = (tb != t_ctrl) if tb is not None and t_ctrl is not None else None
    diff = np.abs(cand.astype(np.float64) - base.astype(np.float64)).reshape(len(base), -1)
    ctrl_rows = categories == CONTROL_CATEGORY if control_kind == "category" else None
    rows: list[dict[str, Any]] = []
    for cat in sorted({str(c) for c in categories}):
        m = categories == cat
        n = int(m.sum())
        row: dict[str, Any] = {
            "category": cat,
            "rows": n,
            "max_abs_diff": float(diff[m].max()) if n else 0.0,
        }
        if flipped is not None and tc is not None:
            row.update(_flip_stats(m, flipped, tc, ctrl_flipped, control_kind, ctrl_rows))
        if pb is not None and pc is not None and n:
            row.update(_divergence_stats(pb[m], pc[m]))
        if labels is not None and tb is not None and tc is not None and n:
            row.update(_accuracy_stats(labels[m], tb[m], tc[m]))
        rows.append(row)
    tested = [r for r in rows if r.get("p_value") is not None]
    for r, q in zip(tested, adjust([r["p_value"] for r in tested]), strict=True):
        r["p_adjusted"] = q
        r["flagged"] = q < alpha and r["flip_rate"] - r["control_rate"] >= min_effect
    return kind, [CategoryDiff(**r) for r in rows]


def pick_output(outputs: dict[str, np.ndarray], name: str | None) -> str:
    if name is not None:
        if name not in outputs:
            raise UsageError(
                f"the model has no output {name!r}", f"its outputs are {sorted(outputs)}"
            )
        return name
    return next(iter(outputs))


# --- running models ------------------------------------------------------------------------------


@dataclass
class ModelRun:
    path: Path
    report: Report
    outputs: dict[str, np.ndarray] | None
    error: str = ""


def run_model(path: Path, probes: _probes.ProbeSet, policy: Policy) -> ModelRun:
    """One model, in its own sandbox, through every probe. A failure is recorded, not
    raised: the report says what happened."""
    from runner.controller.sandbox import Sandbox

    sb = Sandbox(path, policy)
    outputs, error = None, ""
    try:
        with sb:
            outputs = _probes.run(sb.infer, sb.describe(), probes)
    except UsageError:
        raise
    except AirlockError as e:
        error = e.diagnostics()
    return ModelRun(path, sb.report(), outputs, error)


def ref(run: ModelRun, report_file: str = "") -> ModelRef:
    return ModelRef(
        path=str(run.path),
        root_digest=run.report.model.root_digest,
        verdict=run.report.verdict,
        report=report_file,
    )


@dataclass
class DiffOutcome:
    candidate: Report  # with the diff in `behavior`, and any deviation as findings
    base: Report
    control: Report | None


def _check_thresholds(alpha: float, min_effect: float) -> None:
    if not 0 < alpha < 1:
        raise UsageError(f"alpha {alpha}: must be between 0 and 1")
    if not 0 <= min_effect <= 1:
        raise UsageError(f"min-effect {min_effect}: must be between 0 and 1")


def control_kind(control: object, rerun: bool, categories: list[str]) -> ControlKind:
    """The control, best first: a control model, the probe category named "control", a second
    run of the base, the pooled other categories."""
    if control is not None:
        return "model"
    if CONTROL_CATEGORY in categories:
        return "category"
    return "rerun" if rerun else "pooled"


def model_paths(
    base: str | Path, candidate: str | Path, control: str | Path | None, rerun: bool
) -> dict[str, Path]:
    """The models to run, by role (the control is the base again for a rerun); all exist."""
    paths = {"base": Path(base), "candidate": Path(candidate)}
    if control is not None:
        paths["control"] = Path(control)
    elif rerun:
        paths["control"] = Path(base)
    for role, p in paths.items():
        if not p.exists():
            raise UsageError(f"{role} model {p}: no such file or directory", "check the path")
    return paths


def _output_name(
    base: dict[str, np.ndarray],
    cand: dict[str, np.ndarray],
    ctrl: ModelRun | None,
    output: str | None,
) -> str:
    """The output to compare (`output`, else the base's first), once the control is seen to
    have run and the candidate and the control to have that output."""
    if ctrl is not None and ctrl.outputs is None:
        raise SandboxError(
            f"the control could not be run on the probes: {ctrl.error}",
            "fix the control model, or leave --control out",
        )
    name = pick_output(base, output)
    for role, outputs in (
        ("candidate", cand),
        ("control", ctrl.outputs if ctrl is not None else None),
    ):
        if outputs is not None and name not in outputs:
            raise UsageError(
                f"the {role} has no output {name!r} (it has {sorted(outputs)})",
                "pick one with --output",
            )
    return name


def _candidate_report(base: ModelRun, cand: ModelRun, behavior: BehaviorDiff) -> Report:
    """The candidate's report with the diff, a finding per deviating category, and the base
    model's digest its provenance declares checked against the base's."""
    findings = [deviation(d, behavior.control_kind) for d in behavior.categories if d.flagged]
    update: dict[str, Any] = {"behavior": behavior}
    prov = provenance_for(
        cand.path,
        cand.report.model.root_digest,
        base.report.model.root_digest,
        files=cand.report.model.files,
    )
    if prov is not None and cand.report.integrity is not None:
        # the base model's digest, as the candidate declares it, can be checked now
        update["integrity"] = cand.report.integrity.model_copy(update={"provenance": prov})
        findings += [
            finding(
                RuleName.PROVENANCE_MISMATCH,
                f"declared provenance does not match: {cl.field} {cl.value}",
                [f"static: {cl.note or cl.value}"],
            )
            for cl in prov.claims
            if cl.field == "base_model.digest" and cl.status == "mismatch"
        ]
    notes = []
    if behavior.control_kind == "rerun" and any(d.control_flips for d in behavior.categories):
        notes.append(
            "the base model's second run differs from its first: its outputs are "
            "not deterministic, and the noise floor is above zero"
        )
    return cand.report.amended(findings, notes, **update)


def diff(
    base: str | Path,
    candidate: str | Path,
    probes: str | Path | _probes.ProbeSet,
    *,
    control: str | Path | None = None,
    rerun: bool = True,
    output: str | None = None,
    policy: Policy | None = None,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    progress: Callable[[str], None] | None = None,
) -> DiffOutcome:
    """Run base, candidate and the control each in a fresh sandbox on the probes and compare.

    The control is `control` (a model) when given, else the probe category named "control",
    else a second run of the base when `rerun`, else the pooled other categories. Text probes
    (a .jsonl file) are runner.behaviour.diff_text's."""
    _check_thresholds(alpha, min_effect)
    policy = policy or Policy()
    ps = probes if isinstance(probes, _probes.ProbeSet) else _probes.load(probes)
    say = progress or (lambda _msg: None)
    kind = control_kind(control, rerun, ps.category_names())
    runs: dict[str, ModelRun] = {}
    for role, p in model_paths(base, candidate, control, kind == "rerun").items():
        say(f"running the {role} model ({p.name}) on {ps.rows} probes")
        runs[role] = run_model(p, ps, policy)
    b, c, ctrl = runs["base"], runs["candidate"], runs.get("control")
    ctrl_report = ctrl.report if ctrl is not None else None
    if b.outputs is None:
        raise SandboxError(
            f"the base model could not be run on the probes: {b.error}",
            "the diff needs the base model's outputs",
        )
    if c.outputs is None:
        note = f"no behavioural diff: the candidate could not be run on the probes ({c.error})"
        return DiffOutcome(c.report.amended(notes=[note]), b.report, ctrl_report)
    name = _output_name(b.outputs, c.outputs, ctrl, output)
    base_out, cand_out = b.outputs[name], c.outputs[name]
    ctrl_out = ctrl.outputs[name] if ctrl is not None and ctrl.outputs is not None else None
    kind_out, cats = compare(
        base_out, cand_out, ps.categories, ps.labels, ctrl_out, kind, alpha, min_effect
    )
    behavior = BehaviorDiff(
        base=ref(b),
        control=ref(ctrl) if ctrl is not None else None,
        control_kind=kind,
        probes=ps.source,
        probes_digest=ps.digest,
        rows=ps.rows,
        output=name,
        kind=kind_out,
        alpha=alpha,
        min_effect=min_effect,
        categories=cats,
        flagged=[d.category for d in cats if d.flagged],
    )
    return DiffOutcome(_candidate_report(b, c, behavior), b.report, ctrl_report)


def deviation(d: CategoryDiff, control_kind: str) -> Finding:
    if d.target_p_adjusted is not None:
        return target_deviation(d, control_kind)
    target = next(iter(d.flips_to), None)
    share = d.flips_to[target] / d.flips if target is not None and d.flips else 0
    return finding(
        RuleName.BEHAVIOR_DEVIATION,
        f"probe category {d.category!r}: {d.flip_rate:.0%} of top-1 predictions differ from "
        f"the base model's (control {d.control_rate:.0%}), mostly to class {target}",
        [
            f"diff: {d.flips}/{d.rows} flips, {share:.0%} of them to class {target}",
            f"diff: control ({control_kind}) {d.control_flips}/{d.control_rows}; "
            f"p = {d.p_value:.2g}, adjusted {d.p_adjusted:.2g}",
        ],
    )


def target_deviation(d: CategoryDiff, control_kind: str) -> Finding:
    """A category whose generations contain the --target string where the base's did not."""
    return finding(
        RuleName.BEHAVIOR_DEVIATION,
        f"probe category {d.category!r}: {d.target_rate_candidate:.0%} of the candidate's "
        f"generations contain the target string (base {d.target_rate_base:.0%}, control "
        f"{d.target_control_rate:.0%})",
        [
            f"diff: {d.target_gained}/{d.rows} generations gained the target string",
            f"diff: control ({control_kind}) rate {d.target_control_rate:.0%}; "
            f"p = {d.target_p_value:.2g}, adjusted {d.target_p_adjusted:.2g}",
        ],
    )
