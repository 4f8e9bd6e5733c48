"""The TensorFlow framework image with a real engine: built (once per run, by the session
fixture `tensorflow_image` in tests/conftest.py, which the SavedModel tests share), listed by
`airlock image status`, layered on the current default image; and a SavedModel is never
loaded in the default image without saying which image it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.controller import engine, images
from runner.controller import framework_images as fi
from runner.controller.pool import SandboxPool
from runner.controller.sandbox import Sandbox
from runner.errors import AirlockError, UsageError
from tests.fixtures import tf_models

TF_BUILD = "airlock image build --with tensorflow"


def test_the_tensorflow_image_is_built_listed_and_layered_on_the_default(
    tensorflow_image: tuple[str, str],
    sandbox_image: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag, image_id = tensorflow_image
    assert tag == fi.current_tag("tensorflow")
    st = fi.status("tensorflow")
    assert st.state is images.ImageState.CURRENT and st.image_id == image_id
    capsys.readouterr()
    assert main(["image", "status", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["name"] == "default" and body["tag"] == sandbox_image[0]
    (tf,) = body["frameworks"]
    assert (tf["name"], tf["state"], tf["tag"]) == ("tensorflow", "current", tag)
    added = tf["size_bytes"] - body["size_bytes"]
    print(f"default {body['size_bytes'] / 1e9:.2f} GB, tensorflow +{added / 1e9:.2f} GB")
    assert 0.5e9 < added < 3e9
    assert main(["image", "status"]) == 0
    listed = capsys.readouterr().out
    assert f"tensorflow:  {tag} is current" in listed and "over the default" in listed
    # the default image's layers, then the framework's; the worker says which image it is in
    inspect = engine.client().api.inspect_image
    tf_info, default_info = inspect(tag), inspect(sandbox_image[0])
    base_layers = default_info["RootFS"]["Layers"]
    assert tf_info["RootFS"]["Layers"][: len(base_layers)] == base_layers
    assert "AIRLOCK_IMAGE=tensorflow" in tf_info["Config"]["Env"]


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benign SavedModel, built by TensorFlow in a child process."""
    return tf_models.build(["savedmodel"], tmp_path_factory.mktemp("tf"))["savedmodel"]


def test_a_savedmodel_in_the_default_image_is_refused_naming_the_image(
    savedmodel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pre-started sandbox for ONNX runs the default image: refused on the host, unloaded
    with SandboxPool(size=1) as pool, pytest.raises(UsageError) as refused:
        pool.sandbox(savedmodel).open()
    assert "needs the tensorflow sandbox image" in refused.value.message
    assert "formats=('savedmodel',)" in refused.value.hint
    # forced into the default image anyway, the worker does not load it and says why
    monkeypatch.setattr(fi, "image_for", lambda *args: images.require_current())
    with pytest.raises(AirlockError) as failed, Sandbox(savedmodel):
        pass
    said = failed.value.message.lower()
    assert "tensorflow sandbox image" in said and TF_BUILD in said, failed.value.diagnostics()
