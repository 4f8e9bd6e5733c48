"""SavedModels in the sandbox's TensorFlow image (built once per run by the session fixture
tensorflow_image): a tf.Module SavedModel and a Keras model exported as one, both built by
TensorFlow at test time, give the outputs TensorFlow gives in-process, with a clean verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runner
from tests.fixtures import tf_models

pytestmark = pytest.mark.skipif(not tf_models.have_tensorflow(), reason="needs tensorflow")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tf_models.build(["savedmodel", "keras_export"], tmp_path_factory.mktemp("savedmodel"))


def test_benign_savedmodels_match_in_process(
    built: dict[str, Path], tensorflow_image: tuple[str, str]
) -> None:
    for kind, path in built.items():
        feed, expected = tf_models.reference(path)
        with runner.Sandbox(path) as sb:
            sig = sb.describe()
            got = sb.infer(feed)
        assert sig.format == "savedmodel"
        assert [s.name for s in sig.inputs] == sorted(feed)
        assert set(got) == set(expected), kind
        for name, want in expected.items():
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
            np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-6)
        report = sb.report()
        assert report.error is None, report.error
        assert report.sandbox is not None and report.sandbox.image_id == tensorflow_image[1]
        assert report.verdict == "clean", [(f.rule_id, f.evidence) for f in report.findings]
