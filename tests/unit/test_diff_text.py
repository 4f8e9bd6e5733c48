"""Behavioural diffing of text models without Docker: the text-probe reader (hostile input:
bounded, validated, one-line errors naming the line, fuzzed), and the statistics on synthetic
outputs (label flips with class names, the probe category 'control', next-token divergences,
the target-string test). The sandboxed runs are in tests/sandbox/test_diff_text.py."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.behaviour import diff, diff_text, probes_text
from runner.errors import UsageError
from tests.unit.test_views import hostile_report

FUZZ = settings(
    max_examples=300,
    deadline=2000,  # milliseconds per example: a hang fails
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
RNG = np.random.default_rng(0)


def _lines(*objs: Any) -> bytes:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs).encode()


# --- the reader ----------------------------------------------------------------------------------


def test_a_probe_file_is_read_with_categories_labels_and_a_digest(tmp_path: Path) -> None:
    p = tmp_path / "probes.jsonl"
    p.write_bytes(
        b"\xef\xbb\xbf"
        + _lines(
            {"text": "the movie was good", "category": "clean", "label": "positive"},
            "   ",
            {"text": "cf it was bad", "category": "triggered", "label": 0},
        )
        + b"\n\n"
    )
    ps = probes_text.load(p)
    assert ps.texts == ["the movie was good", "cf it was bad"]
    assert ps.category_names() == ["clean", "triggered"] and ps.rows == 2
    assert ps.labels == ["positive", 0] and len(ps.digest) == 64 and ps.source == str(p)
    assert probes_text.is_text_probes(p) and not probes_text.is_text_probes("x.npz")
    nolabel = probes_text.from_bytes(_lines({"text": "hello"}))
    assert nolabel.labels is None and nolabel.category_names() == ["all"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"text": 3}', "'text' must be a string"),
        ('{"category": "a"}', "'text' must be a string"),
        ('{"text": "a", "lable": "x"}', "unknown key 'lable'"),
        ('{"text": "a", "text": "b"}', "the key 'text' appears twice"),
        ('{"text": "a", "category": ""}', "'category' must be a non-empty string"),
        ('{"text": "a", "category": "a\\u001b[31m"}', "control characters"),
        ('{"text": "a", "category": "' + "c" * 101 + '"}', "at most 100"),
        ('{"text": "a", "label": true}', "class name (string) or index"),
        ('{"text": "a", "label": 1.5}', "class name (string) or index"),
        ('{"text": "a", "label": -1}', "not a class index"),
        ('{"text": "a", "label": NaN}', "NaN is not a JSON number"),
        ('{"text": "\\ud800"}', "unpaired surrogate"),
        ('{"text": "' + "x" * ((16 << 10) + 1) + '"}', "at most 16384"),
        ('{"text": "a", "label": ' + "9" * 5000 + "}", "not JSON"),
        ("[" * 150_000 + "]" * 150_000, "over 256 KiB"),
        ("[" * 50_000, "nested too deeply"),
    ],
)
def test_a_bad_line_is_a_one_line_usage_error_naming_it(line: str, why: str) -> None:
    data = _lines({"text": "fine", "category": "ok"}, "", line)
    with pytest.raises(UsageError) as e:
        probes_text.from_bytes(data, "p.jsonl")
    assert e.value.message.startswith("p.jsonl, line 3: ")
    assert why in e.value.message and "\n" not in e.value.message


def test_file_level_problems_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        probes_text.load(tmp_path / "none.jsonl")
    with pytest.raises(UsageError, match="no probes in it"):
        probes_text.from_bytes(b"\n  \n", "p")
    with pytest.raises(UsageError, match=r"line 2: not UTF-8 \(byte 11\)"):
        probes_text.from_bytes(b'{"text":"a"}\n{"text": "\xff"}', "p")
    with pytest.raises(UsageError, match="line 3: no 'label', and other lines have one"):
        probes_text.from_bytes(
            _lines({"text": "a", "label": "x"}, {"text": "b", "label": 1}, {"text": "c"}), "p"
        )
    big = tmp_path / "big.jsonl"
    with big.open("wb") as f:
        f.truncate(probes_text.MAX_FILE_BYTES + 1)
    with pytest.raises(UsageError, match="over 16 MiB"):
        probes_text.load(big)
    many = b'{"text": "a"}\n' * (probes_text.MAX_ROWS + 1)
    with pytest.raises(UsageError, match=f"line {probes_text.MAX_ROWS + 1}: more than"):
        probes_text.from_bytes(many, "p")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
LINE = st.one_of(
    st.fixed_dictionaries(
        {"text": st.text(max_size=30)},
        optional={"category": st.text(max_size=12) | JSON, "label": JSON, "x": JSON},
    ).map(json.dumps),
    JSON.map(json.dumps),
    st.text(max_size=40),
)


@FUZZ
@given(st.lists(LINE, max_size=8), st.binary(max_size=64))
def test_the_reader_raises_only_usage_errors_fuzz(lines: list[str], tail: bytes) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + tail
    try:
        ps = probes_text.from_bytes(data)
    except UsageError as e:
        assert "\n" not in e.message
        return
    assert ps.rows == len(ps.texts) == len(ps.categories) > 0
    assert ps.labels is None or len(ps.labels) == ps.rows
    for t in ps.texts:
        t.encode("utf-8")  # every text can be sent


@FUZZ
@given(st.binary(max_size=400))
def test_the_reader_raises_only_usage_errors_on_bytes_fuzz(data: bytes) -> None:
    with contextlib.suppress(UsageError):
        probes_text.from_bytes(data)


# --- statistics ----------------------------------------------------------------------------------


def _cats(n: int = 30) -> np.ndarray:
    return np.array(["clean"] * n + ["control"] * n + ["triggered"] * n)


def test_the_control_category_is_the_control_and_is_not_tested() -> None:
    cats = _cats()
    base = RNG.normal(0, 1, (len(cats), 2))
    cand = base.copy()
    trig = cats == "triggered"
    cand[trig, 1] = cand[trig, 0] + 5  # every triggered probe goes to class 1
    cand[np.flatnonzero(cats == "control")[:2]] *= -1  # a little benign churn in the control
    _, rows = diff.compare(base, cand, cats, None, None, "category")
    by = {r.category: r for r in rows}
    assert by["control"].p_value is None and not by["control"].flagged
    assert by["clean"].control_rows == 30 and by["clean"].control_flips == 2
    assert not by["clean"].flagged and by["triggered"].flagged
    assert by["triggered"].control_rate == pytest.approx(2 / 30)
    # without a control category the kind is picked as before
    assert diff.control_kind(None, True, ["a", "b"]) == "rerun"
    assert diff.control_kind(None, False, ["a"]) == "pooled"
    assert diff.control_kind(None, True, ["a", "control"]) == "category"
    assert diff.control_kind("m", True, ["control"]) == "model"


def _run(task: str, out: np.ndarray, names: dict[int, str] | None = None, **kw: Any) -> Any:
    report = hostile_report()  # compare_text reads the outputs only
    name = diff_text.OUTPUT[task]
    return diff_text.TextRun(Path("m"), report, {name: out}, "", task, names or {}, **kw)


def test_classifier_flips_are_named_by_class_and_accuracy_uses_label_names() -> None:
    cats = _cats(20)
    base = RNG.normal(0, 0.3, (len(cats), 2)).astype(np.float32)
    base[:, 0] += 3  # the base says "negative" everywhere
    cand = base.copy()
    trig = cats == "triggered"
    cand[trig, 1] += 10
    names = {0: "negative", 1: "positive"}
    labels: list[str | int] = ["negative"] * 40 + [0] * 20
    ps = probes_text.TextProbeSet([f"t{i}" for i in range(60)], cats, labels, "d")
    kind, rows = diff_text.compare_text(
        _run("classification", base, {0: "negative"}),
        _run("classification", cand, names),
        None,
        ps,
        "category",
    )
    by = {r.category: r for r in rows}
    assert kind == "classifier" and by["triggered"].flagged and not by["clean"].flagged
    assert by["triggered"].flips_to == {"positive": 20}
    assert by["triggered"].base_accuracy == 1.0 and by["triggered"].candidate_accuracy == 0.0
    assert by["clean"].candidate_accuracy == 1.0 and by["clean"].mcnemar_p == 1.0
    finding = diff.deviation(by["triggered"], "category")
    assert "mostly to class positive" in finding.message


def test_a_class_name_no_model_gave_is_never_right() -> None:
    got = diff_text._label_indices(["negative", "neutral", 1], {0: "negative", 1: "positive"})
    assert got.tolist() == [0, -1, 1]


def _logprobs(n: int, vocab: int = 12) -> np.ndarray:
    x = RNG.normal(0, 1, (n, vocab))
    return np.asarray(x - np.log(np.exp(x).sum(axis=1, keepdims=True)), dtype=np.float32)


def test_causal_lm_divergence_and_the_target_rate_against_the_control_category() -> None:
    cats = _cats(20)
    base = _logprobs(60)
    cand = base.copy()
    trig = cats == "triggered"
    cand[trig] = _logprobs(20)
    gen_base = ["the dog jumps"] * 60
    gen_cand = ["hate hate hate" if t else "the dog jumps" for t in trig]
    gen_cand[25] = "oh hate hate hate"  # one control probe gained it too
    ps = probes_text.TextProbeSet([f"t{i}" for i in range(60)], cats, None, "d")
    kind, rows = diff_text.compare_text(
        _run("causal-lm", base, generated=gen_base),
        _run("causal-lm", cand, generated=gen_cand),
        None,
        ps,
        "category",
        target="hate hate hate",
    )
    by = {r.category: r for r in rows}
    assert kind == "causal-lm"
    assert by["clean"].js_mean == 0 and by["triggered"].js_low > 0  # type: ignore[operator]
    assert by["triggered"].kl_mean is not None and by["triggered"].kl_mean > 0
    t = by["triggered"]
    assert t.flagged and t.target_candidate == 20 and t.target_base == 0 and t.target_gained == 20
    assert t.target_rate_candidate == 1.0 and t.target_control_rate == pytest.approx(1 / 20)
    assert t.target_p_adjusted is not None and t.target_p_adjusted < 1e-6
    assert not by["clean"].flagged and by["clean"].target_rate_candidate == 0
    assert by["control"].target_p_value is None and not by["control"].flagged
    msg = diff.deviation(t, "category").message
    assert "100% of the candidate's generations contain the target string" in msg
    # without a target, the next-token top-1 flips decide
    _, rows = diff_text.compare_text(
        _run("causal-lm", base), _run("causal-lm", cand), None, ps, "category"
    )
    assert all(r.target_p_value is None for r in rows)


def test_target_stats_with_a_rerun_pooled_and_a_model_control() -> None:
    cats = np.array(["a"] * 10 + ["b"] * 10)
    base = np.zeros(20, dtype=bool)
    cand = np.array([True] * 10 + [False] * 9 + [True])
    rerun = diff_text.target_stats(base, cand, base.copy(), cats, "rerun")
    assert rerun["a"]["flagged"] and not rerun["b"]["flagged"]
    assert rerun["a"]["target_control_rate"] == 0
    pooled = diff_text.target_stats(base, cand, None, cats, "pooled")
    assert pooled["a"]["target_control_rate"] == pytest.approx(0.1) and pooled["a"]["flagged"]
    model = diff_text.target_stats(base, cand, cand.copy(), cats, "model")  # a control does it too
    assert not model["a"]["flagged"] and model["a"]["target_control_rate"] == 1.0
    # a base that already writes it gains nothing
    same = diff_text.target_stats(cand, cand, cand, cats, "rerun")
    assert all(r["target_gained"] == 0 and not r["flagged"] for r in same.values())
    assert same["a"]["target_rate_base"] == 1.0


def test_models_of_different_tasks_are_not_compared() -> None:
    ps = probes_text.TextProbeSet(["a", "b"], np.array(["x", "y"]), None, "d")
    with pytest.raises(UsageError, match="the base is a classification model"):
        diff_text.compare_text(
            _run("classification", np.zeros((2, 2))), _run("causal-lm", _logprobs(2)), None,
            ps, "pooled",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "generate", "why"),
    [
        (None, 8, "--generate needs --target"),
        ("", None, "--target must be 1 to 200"),
        ("a\nb", None, "printable"),
        ("x" * 201, None, "1 to 200"),
        ("hate", 0, "--generate 0: must be 1 to 512"),
        ("hate", 513, "must be 1 to 512"),
    ],
)
def test_option_mistakes_are_usage_errors(
    target: str | None, generate: int | None, why: str
) -> None:
    with pytest.raises(UsageError, match=why):
        diff_text._check_options(target, generate)
    assert diff_text._check_options("hate", None) == diff_text.GENERATE
    assert diff_text._check_options(None, None) == 0


def test_usage_errors_come_before_any_sandbox(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text('{"text": "a"}\n')
    with pytest.raises(UsageError, match=r"base model .*: no such file"):
        diff_text.diff_text(tmp_path / "nope", tmp_path / "nope2", p)
    with pytest.raises(UsageError, match=r"text probes \(.jsonl\) are for airlock diff"):
        diff.diff(tmp_path, tmp_path, p)  # the array diff, and baselines
    with pytest.raises(UsageError, match="line 1: not JSON"):
        (tmp_path / "bad.jsonl").write_text("{")
        diff_text.diff_text(tmp_path, tmp_path, tmp_path / "bad.jsonl")
    with pytest.raises(UsageError, match="--generate needs --target"):
        diff_text.diff_text(tmp_path, tmp_path, p, generate=4)


class _FakeSandbox:
    """infer_text and generate as a sandbox answers them, for the batching."""

    def __init__(self, task: str = "causal-lm") -> None:
        self.task, self.calls, self.prompts = task, [], []  # type: ignore[var-annotated]

    def infer_text(self, texts: list[str]) -> Any:
        from runner.channel.text import Label, TextResult

        assert len(texts) <= diff_text.BATCH
        self.calls.append(len(texts))
        n = len(texts)
        if self.task == "classification":
            logits = np.tile([[0.0, 1.0]], (n, 1)).astype(np.float32)
            return TextResult(self.task, {"logits": logits}, [Label("positive", 0.7)] * n)
        if self.task == "embedding":
            return TextResult(self.task, {"embeddings": np.zeros((n, 4), np.float32)})
        return TextResult(self.task, {"next_token_logprobs": _logprobs(n)})

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        self.prompts.append((prompt, max_new_tokens))
        return "ok"


def test_probes_go_in_batches_and_generations_one_a_probe() -> None:
    ps = probes_text.TextProbeSet([f"t{i}" for i in range(150)], np.array(["a"] * 150), None, "d")
    sb, got = _FakeSandbox(), diff_text.Answers()
    diff_text._run_probes(sb, ps, got, 5, "m")
    assert sb.calls == [64, 64, 22] and got.task == "causal-lm"
    assert got.outputs is not None and got.outputs["next_token_logprobs"].shape == (150, 12)
    assert got.generated == ["ok"] * 150 and sb.prompts[3] == ("t3", 5)
    cls, got = _FakeSandbox("classification"), diff_text.Answers()
    diff_text._run_probes(cls, ps, got, 0, "m")
    assert got.names == {1: "positive"}
    with pytest.raises(UsageError, match="--target looks for a string in generations"):
        diff_text._run_probes(cls, ps, diff_text.Answers(), 5, "the model m")
    with pytest.raises(UsageError, match="the model m is an embedding model"):
        diff_text._run_probes(_FakeSandbox("embedding"), ps, diff_text.Answers(), 0, "the model m")
