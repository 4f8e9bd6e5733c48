"""Hostile Keras models in a real sandbox, checked from the host with the corpus's own
containment checks (tests/hostile/test_corpus.run_fixture: no marker on the host, the host's
files unchanged, the container gone): each is detected by the host's static read and, where
the payload runs, by what the sandbox saw, side by side in the report."""

from __future__ import annotations

import numpy as np
import pytest

import runner
from tests.hostile import keras_hostile as kh
from tests.hostile.corpus import Fixture
from tests.hostile.test_corpus import run_fixture

pytest.importorskip("keras")

X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)

# (fixture, static findings it must have, dynamic findings it must have)
CASES: list[tuple[Fixture, set[str], set[str]]] = [
    (
        Fixture(
            "keras Lambda",
            "a .keras Lambda layer whose marshalled bytecode writes a file and starts a shell",
            kh.lambda_keras,
            frozenset(),
            infer=X,
        ),
        {"AL950", "AL953"},
        {"AL202"},
    ),
    (
        Fixture(
            "h5 Lambda",
            "the same Lambda bytecode in a legacy .h5 file's model_config",
            kh.lambda_h5,
            frozenset(),
            infer=X,
        ),
        {"AL950", "AL953"},
        {"AL202"},
    ),
    (
        Fixture(
            "keras TorchModuleWrapper",
            "a config naming only Keras whose TorchModuleWrapper's torch.save stream calls "
            "os.system when Keras unpickles it at load (safe_mode=False)",
            kh.torch_module,
            frozenset(),
        ),
        {"AL954", "AL611"},
        {"AL202", "AL601"},
    ),
    (
        Fixture(
            "keras utility",
            "CVE-2025-8747's shape: a Lambda calling keras.utils.get_file (Keras 3.15 refuses it)",
            kh.keras_utility,
            frozenset(),
        ),
        {"AL953"},
        set(),
    ),
    (
        Fixture(
            "keras arbitrary module",
            "CVE-2025-1550's shape: an initializer named builtins.exec (Keras 3.15 refuses it)",
            kh.arbitrary_module,
            frozenset(),
        ),
        {"AL953"},
        set(),
    ),
]


@pytest.mark.parametrize(("fx", "static", "dynamic"), CASES, ids=[c[0].name for c in CASES])
def test_hostile_keras_models_are_contained_and_detected(
    fx: Fixture, static: set[str], dynamic: set[str], tmp_path: object
) -> None:
    report, error = run_fixture(fx, tmp_path)  # type: ignore[arg-type]
    seen_static = {f.rule_id for f in report.findings if f.source.value == "static"}
    seen_dynamic = {f.rule_id for f in report.findings if f.source.value != "static"}
    shown = [(f.rule_id, f.source.value, f.evidence[:2]) for f in report.findings]
    assert report.verdict is runner.Verdict.MALICIOUS, shown
    assert static <= seen_static, shown
    assert dynamic <= seen_dynamic, shown
    if not dynamic:  # Keras refuses the config: the load fails, naming why
        assert error is not None and report.error is not None, shown
        assert "Keras could not load the model" in report.error.message
