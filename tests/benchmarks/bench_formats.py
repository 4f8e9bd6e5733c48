"""Cold start per format: a fresh sandbox's open to first answer (an inference, or a short
generation for GGUF) against the same file loaded and called once in a fresh Python process on
the host (the library's import included, as a user's script pays it), and against the floor
(`docker run --rm --network none IMAGE true`). A SavedModel is measured when the TensorFlow
image is current (`airlock image build --with tensorflow`); it is named as left out otherwise."""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import runner
from runner.controller import framework_images
from runner.controller import images as _image
from tests.fixtures import gguf_models, keras_models, sklearn_models, tf_models

REPEATS = 2
ROOT = Path(__file__).resolve().parents[2]

# kind -> the in-process script: load the file at sys.argv[1] and answer once
IN_PROCESS = {
    "joblib": """
        import joblib, numpy as np
        m = joblib.load(sys.argv[1]); m.predict_proba(np.zeros((2, m.n_features_in_)))
    """,
    "skops": """
        import skops.io as sio, numpy as np
        m = sio.load(sys.argv[1], trusted=sio.get_untrusted_types(file=sys.argv[1]))
        m.predict_proba(np.zeros((2, m.n_features_in_)))
    """,
    "npz": """
        import numpy as np
        with np.load(sys.argv[1], allow_pickle=True) as z: [z[k] for k in z.files]
    """,
    "keras": """
        import os; os.environ["KERAS_BACKEND"] = "torch"
        import keras, numpy as np
        m = keras.saving.load_model(sys.argv[1], safe_mode=False, compile=False)
        m(np.zeros((1, *m.inputs[0].shape[1:]), np.float32))
    """,
    "gguf": """
        import xllamacpp as x
        p = x.CommonParams(); p.model.path = sys.argv[1]; p.n_ctx = 512; p.n_parallel = 1
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1; p.warmup = False
        s = x.Server(p)
        s.handle_completions({"prompt": "hello", "max_tokens": 8, "temperature": 0})
    """,
    "tflite": """
        from ai_edge_litert.interpreter import Interpreter
        import numpy as np
        i = Interpreter(model_path=sys.argv[1], num_threads=1); i.allocate_tensors()
        d = i.get_input_details()[0]; i.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        i.invoke()
    """,
    "savedmodel": """
        import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        m = tf.saved_model.load(sys.argv[1]); f = m.signatures["serving_default"]
        spec = list(f.structured_input_signature[1].values())[0]
        f(**{spec.name: tf.zeros([d or 1 for d in spec.shape], spec.dtype)})
    """,
}


def _in_process(kind: str, path: Path) -> float:
    script = "import sys\n" + textwrap.dedent(IN_PROCESS[kind])
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, capture_output=True)
    return time.perf_counter() - start


def _floor(tag: str) -> float:
    start = time.perf_counter()
    cmd = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "true", tag]
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def _sandbox(kind: str, path: Path) -> float:
    start = time.perf_counter()
    with runner.Sandbox(path) as sb:
        if kind == "gguf":
            sb.generate("hello", max_new_tokens=8)
        else:
            described = sb.describe()
            feed = {
                s.name: np.zeros([d if d > 0 else 1 for d in s.shape], s.dtype or "float32")
                for s in described.inputs
            }
            if feed and described.can_infer:
                sb.infer(feed)
    return time.perf_counter() - start


def _models(d: Path) -> dict[str, Path]:
    out = {
        "joblib": sklearn_models.saved("forest", "joblib", d / "joblib").path,
        "skops": sklearn_models.saved("forest", "skops", d / "skops").path,
        "npz": sklearn_models.save_npz(d),
        "keras": keras_models.benign(d / "keras", "dense"),
        "gguf": gguf_models.tiny_llama(d / "tiny.gguf"),
    }
    kinds = ["tflite"]
    if framework_images.status("tensorflow").state is _image.ImageState.CURRENT:
        kinds.append("savedmodel")
    (d / "tf").mkdir()
    out.update(tf_models.build(kinds, d / "tf"))
    return out


def test_cold_start_per_format(
    tmp_path: Path, record: Callable[[str, dict[str, object]], None]
) -> None:
    tag, _ = _image.require_current()
    paths = _models(tmp_path)
    floor = statistics.median(_floor(tag) for _ in range(REPEATS))
    figures: dict[str, object] = {"floor_s": floor}
    print(f"\nfloor (docker run true): {floor:.3f} s")
    print(f"{'format':<11} {'in-process s':>12} {'sandbox s':>10} {'ratio':>7}")
    for kind, path in paths.items():
        here = statistics.median(_in_process(kind, path) for _ in range(REPEATS))
        there = statistics.median(_sandbox(kind, path) for _ in range(REPEATS))
        ratio = there / (floor + here)
        figures[kind] = {"in_process_s": here, "sandbox_s": there, "ratio": ratio}
        print(f"{kind:<11} {here:>12.3f} {there:>10.3f} {ratio:>6.2f}x")
    if "savedmodel" not in paths:
        print("savedmodel: left out (the TensorFlow image is not current)")
    record("formats", figures)
