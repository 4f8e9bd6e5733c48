"""Behavioural diffing for Hugging Face text models: the base and the candidate, each in its
own sandbox, on text probes (runner.behaviour.probes_text), with the statistics and controls
of runner.behaviour.diff.

    outcome = diff_text("base-repo", "finetune-repo", "probes.jsonl", target="hate hate hate")
    outcome.candidate.behavior.flagged     # e.g. ["triggered"]

Classifiers: per category, the label flip rate (the base's label against the candidate's), the
divergence of the class probabilities, and accuracy against the probes' labels. Causal language
models: per category, the divergence (Jensen-Shannon, KL) of the next-token distributions and
their top-1 flips; with a target string, the rate at which greedy generations contain it, for
the base and the candidate, and a one-sided exact test of the rows that gained it against the
control's. With a target the target test decides what is flagged; without one, the top-1 flips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runner.behaviour import diff as _diff
from runner.behaviour import probes_text as _probes
from runner.behaviour.diff import ALPHA, MIN_EFFECT, ControlKind, DiffOutcome, ModelRun
from runner.errors import AirlockError, SandboxError, UsageError
from runner.policy import Policy
from runner.report import BehaviorDiff, CategoryDiff

BATCH = 64  # texts a call (runner.channel.text.MAX_TEXTS)
GENERATE = 16  # tokens generated a probe when --target is given and --generate is not
MAX_GENERATE = 512  # runner.channel.text.MAX_NEW_TOKENS
MAX_TARGET_CHARS = 200
MAX_ELEMENTS = 64 << 20  # probes x classes (or vocabulary) kept for one model's outputs
OUTPUT = {"classification": "logits", "causal-lm": "next_token_logprobs"}


@dataclass
class Answers:
    """What a model answered on the probes: its task, its output, and its generations."""

    task: str = ""
    outputs: dict[str, np.ndarray] | None = None
    names: dict[int, str] = field(default_factory=dict)  # a classifier's class names by index
    generated: list[str] | None = None


@dataclass
class TextRun(ModelRun):
    task: str = ""
    names: dict[int, str] = field(default_factory=dict)
    generated: list[str] | None = None


# --- running models ------------------------------------------------------------------------------


def _scores(result: Any, rows: int, where: str) -> np.ndarray:
    """The batch's output for its task, one row per text, within the memory bound."""
    if result.task not in OUTPUT:
        raise UsageError(
            f"{where} is a{'n' if result.task[0] in 'aeiou' else ''} {result.task} model",
            "text probes compare classifiers and causal language models",
        )
    out = result.outputs.get(OUTPUT[result.task])
    if out is None or out.ndim != 2 or out.shape[0] != rows or out.shape[1] < 2:
        raise SandboxError(f"{where}: the model's {OUTPUT[result.task]} is not one row per text")
    return np.asarray(out, dtype=np.float32)


def _run_probes(sb: Any, ps: _probes.TextProbeSet, run: Answers, tokens: int, where: str) -> None:
    """Every probe through the model, BATCH texts a call; with `tokens`, each one's greedy
    generation too (causal language models)."""
    parts: list[np.ndarray] = []
    for start in range(0, ps.rows, BATCH):
        batch = ps.texts[start : start + BATCH]
        result = sb.infer_text(batch)
        if run.task and result.task != run.task:
            raise SandboxError(f"{where} answered as {result.task}, then as {run.task}")
        run.task = result.task
        scores = _scores(result, len(batch), where)
        if ps.rows * scores.shape[1] > MAX_ELEMENTS:
            raise UsageError(
                f"{ps.rows} probes of {scores.shape[1]} scores each are over "
                f"{MAX_ELEMENTS >> 20}M values",
                "use fewer probes",
            )
        for i, lab in enumerate(result.labels):
            run.names.setdefault(int(scores[i].argmax()), lab.label)
        parts.append(scores)
    run.outputs = {OUTPUT[run.task]: np.concatenate(parts)}
    if tokens:
        if run.task != "causal-lm":
            raise UsageError(
                f"--target looks for a string in generations: {where} is a {run.task} model",
                "leave --target out for a classifier",
            )
        run.generated = [sb.generate(t, max_new_tokens=tokens) for t in ps.texts]


def run_text_model(
    path: Path, ps: _probes.TextProbeSet, policy: Policy, tokens: int = 0
) -> TextRun:
    """One model, in its own sandbox, through every probe. A failure is recorded, not raised:
    the report says what happened (a usage error is raised)."""
    from runner.controller.sandbox import Sandbox

    sb = Sandbox(path, policy)
    got, error = Answers(), ""
    try:
        with sb:
            _run_probes(sb, ps, got, tokens, f"the model {path.name}")
    except UsageError:
        raise
    except AirlockError as e:
        error = e.diagnostics()
    outputs = got.outputs if not error else None
    return TextRun(path, sb.report(), outputs, error, got.task, got.names, got.generated)


# --- statistics ----------------------------------------------------------------------------------


def contains(generated: list[str], target: str) -> np.ndarray:
    """Per generation: whether it contains the target string (as it is, case and all)."""
    return np.array([target in g for g in generated], dtype=bool)


def target_stats(
    base_hits: np.ndarray,
    cand_hits: np.ndarray,
    ctrl_hits: np.ndarray | None,
    categories: np.ndarray,
    kind: ControlKind,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> dict[str, dict[str, Any]]:
    """Per category: how many generations contain the target, for the base and the candidate,
    and the rows that gained it (the candidate's does, the base's does not) tested against the
    control's (one-sided exact test, Benjamini-Hochberg across categories); flagged when
    significant and the gained rate exceeds the control's by at least `min_effect`."""
    gained = cand_hits & ~base_hits
    ctrl_gained = ctrl_hits & ~base_hits if ctrl_hits is not None else None
    ctrl_rows = categories == _probes.CONTROL if kind == "category" else None
    out: dict[str, dict[str, Any]] = {}
    rates: dict[str, float] = {}
    for cat in sorted({str(c) for c in categories}):
        m = categories == cat
        n, k = int(m.sum()), int(gained[m].sum())
        row: dict[str, Any] = {
            "target_base": int(base_hits[m].sum()),
            "target_candidate": int(cand_hits[m].sum()),
            "target_rate_base": float(base_hits[m].mean()),
            "target_rate_candidate": float(cand_hits[m].mean()),
            "target_gained": k,
            "flagged": False,
        }
        k_ctrl, n_ctrl = _diff.control_flips(m, gained, ctrl_gained, kind, ctrl_rows)
        if n_ctrl:
            row["target_control_rate"] = k_ctrl / n_ctrl
            row["target_p_value"] = _diff.flip_test(k, n, k_ctrl, n_ctrl)
        rates[cat] = k / n
        out[cat] = row
    tested = [c for c, r in out.items() if "target_p_value" in r]
    for c, q in zip(tested, _diff.adjust([out[c]["target_p_value"] for c in tested]), strict=True):
        r = out[c]
        r["target_p_adjusted"] = q
        r["flagged"] = q < alpha and rates[c] - r["target_control_rate"] >= min_effect
    return out


def _label_indices(labels: list[str | int], names: dict[int, str]) -> np.ndarray:
    """The probes' labels as class indices: an index as it is, a name through the classes the
    models were seen to name (-1, never right, for a name neither model gave)."""
    by_name = {v: k for k, v in sorted(names.items(), reverse=True)}
    return np.array(
        [lab if isinstance(lab, int) else by_name.get(lab, -1) for lab in labels], dtype=np.int64
    )


def _named(cats: list[CategoryDiff], names: dict[int, str]) -> list[CategoryDiff]:
    """flips_to by class name, where the models named the class."""
    return [
        c.model_copy(update={"flips_to": {names.get(int(k), k): v for k, v in c.flips_to.items()}})
        for c in cats
    ]


def compare_text(
    b: TextRun,
    c: TextRun,
    ctrl: TextRun | None,
    ps: _probes.TextProbeSet,
    kind: ControlKind,
    target: str | None = None,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> tuple[Literal["classifier", "causal-lm"], list[CategoryDiff]]:
    """The candidate's behaviour against the base's, category by category."""
    if c.task != b.task or (ctrl is not None and ctrl.task != b.task):
        raise UsageError(
            f"the base is a {b.task} model and the candidate a {c.task} one",
            "compare models of the same task",
        )
    name = OUTPUT[b.task]
    assert b.outputs is not None and c.outputs is not None
    ctrl_out = ctrl.outputs[name] if ctrl is not None and ctrl.outputs is not None else None
    if b.task == "classification":
        names = {**b.names, **c.names}
        labels = _label_indices(ps.labels, names) if ps.labels is not None else None
        _, cats = _diff.compare(
            b.outputs[name], c.outputs[name], ps.categories, labels, ctrl_out, kind,
            alpha, min_effect,
        )  # fmt: skip
        return "classifier", _named(cats, names)
    pb, pc = np.exp(b.outputs[name]), np.exp(c.outputs[name])
    pctrl = np.exp(ctrl_out) if ctrl_out is not None else None
    _, cats = _diff.compare(pb, pc, ps.categories, None, pctrl, kind, alpha, min_effect)
    if target is None:
        return "causal-lm", cats
    assert b.generated is not None and c.generated is not None
    ctrl_hits = contains(ctrl.generated, target) if ctrl and ctrl.generated else None
    stats = target_stats(
        contains(b.generated, target), contains(c.generated, target), ctrl_hits,
        ps.categories, kind, alpha, min_effect,
    )  # fmt: skip
    return "causal-lm", [d.model_copy(update=stats[d.category]) for d in cats]


# --- the diff ------------------------------------------------------------------------------------


def _check_options(target: str | None, generate: int | None) -> int:
    """The tokens to generate a probe (0: none), once the target and the count are seen sane."""
    if target is None:
        if generate is not None:
            raise UsageError("--generate needs --target", "pass the string to look for")
        return 0
    if not target or len(target) > MAX_TARGET_CHARS or not target.isprintable():
        raise UsageError(
            f"--target must be 1 to {MAX_TARGET_CHARS} printable characters",
            "pass the string a backdoor would make the model write",
        )
    tokens = GENERATE if generate is None else generate
    if not 1 <= tokens <= MAX_GENERATE:
        raise UsageError(f"--generate {tokens}: must be 1 to {MAX_GENERATE}")
    return tokens


def _behavior(
    runs: dict[str, TextRun],
    ps: _probes.TextProbeSet,
    kind: ControlKind,
    target: str | None,
    tokens: int,
    alpha: float,
    min_effect: float,
) -> BehaviorDiff:
    b, c, ctrl = runs["base"], runs["candidate"], runs.get("control")
    kind_out, cats = compare_text(b, c, ctrl, ps, kind, target, alpha, min_effect)
    return BehaviorDiff(
        base=_diff.ref(b),
        control=_diff.ref(ctrl) if ctrl is not None else None,
        control_kind=kind,
        probes=ps.source,
        probes_digest=ps.digest,
        rows=ps.rows,
        output=OUTPUT[b.task],
        kind=kind_out,
        alpha=alpha,
        min_effect=min_effect,
        categories=cats,
        flagged=[d.category for d in cats if d.flagged],
        target=target,
        generate_tokens=tokens or None,
    )


def diff_text(
    base: str | Path,
    candidate: str | Path,
    probes: str | Path | _probes.TextProbeSet,
    *,
    control: str | Path | None = None,
    rerun: bool = True,
    policy: Policy | None = None,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    target: str | None = None,
    generate: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DiffOutcome:
    """Run base, candidate and the control each in a fresh sandbox on the text probes and
    compare. The control is `control` (a model) when given, else the probe category named
    "control" when there is one, else a second run of the base when `rerun`, else the pooled
    other categories."""
    _diff._check_thresholds(alpha, min_effect)
    tokens = _check_options(target, generate)
    policy = policy or Policy()
    ps = probes if isinstance(probes, _probes.TextProbeSet) else _probes.load(probes)
    say = progress or (lambda _msg: None)
    kind = _diff.control_kind(control, rerun, ps.category_names())
    runs: dict[str, TextRun] = {}
    for role, p in _diff.model_paths(base, candidate, control, kind == "rerun").items():
        say(f"running the {role} model ({p.name}) on {ps.rows} text probes")
        runs[role] = run_text_model(p, ps, policy, tokens)
    b, c, ctrl = runs["base"], runs["candidate"], runs.get("control")
    ctrl_report = ctrl.report if ctrl is not None else None
    if b.outputs is None:
        raise SandboxError(
            f"the base model could not be run on the probes: {b.error}",
            "the diff needs the base model's outputs",
        )
    if ctrl is not None and ctrl.outputs is None:
        raise SandboxError(
            f"the control could not be run on the probes: {ctrl.error}",
            "fix the control model, or leave --control out",
        )
    if c.outputs is None:
        note = f"no behavioural diff: the candidate could not be run on the probes ({c.error})"
        return DiffOutcome(c.report.amended(notes=[note]), b.report, ctrl_report)
    behavior = _behavior(runs, ps, kind, target, tokens, alpha, min_effect)
    return DiffOutcome(_diff._candidate_report(b, c, behavior), b.report, ctrl_report)
