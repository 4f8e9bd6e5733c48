"""A real SavedModel from PyPI: Spotify's basic-pitch 0.4.0 ships its note-transcription model
(a Keras 2 SavedModel saved with its optimizer). The host reads it clean (no finding, and its
checkpoint files are no anomaly). TensorFlow 2.21 cannot load it, in-process as in the sandbox's
TensorFlow image: the same error in both, reported as a load failure (never a clean verdict)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.static import preflight
from runner.static.manifest import anomalies
from tests.fixtures import tf_models
from tests.sandbox.test_cli import airlock

pytestmark = pytest.mark.skipif(not tf_models.have_tensorflow(), reason="needs tensorflow")


def _model() -> Path:
    spec = importlib.util.find_spec("basic_pitch")  # found without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("basic-pitch is not installed: run make venv (it installs with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "saved_models/icassp_2022/nmp"


def _in_process_error(path: Path) -> str:
    script = "import sys, tensorflow as tf\ntry:\n    tf.saved_model.load(sys.argv[1])\n"
    script += "except Exception as e:\n    print(e)\n"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def test_the_host_reads_the_real_savedmodel_clean() -> None:
    path = _model()
    result = preflight.examine(path)
    assert result.format == "savedmodel" and not result.format_error
    assert result.tamper == [] and result.imports == []
    assert anomalies(path) == []


@pytest.mark.docker
def test_the_real_savedmodel_fails_to_load_as_it_does_in_process(
    tensorflow_image: tuple[str, str],
) -> None:
    path = _model()
    expected = _in_process_error(path)
    assert "add_slot" in expected, expected
    proc = airlock("scan", str(path), "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert expected in report["error"]["message"], report["error"]
    assert report["verdict"] == "error"
    assert report["findings"] == [], report["findings"]
