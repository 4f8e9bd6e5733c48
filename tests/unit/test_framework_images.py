"""Framework images (runner.controller.framework_images) with the engine faked: the table,
the content-addressed tag, current / stale / missing, the on-demand build (once, under a lock,
or refused with AIRLOCK_AUTO_BUILD=0), a pooled sandbox's check, a batch's one build, gc."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.cli import main
from runner.controller import framework_images as fi
from runner.controller import images
from runner.errors import ImageError, UsageError
from runner.worker.shared import images as table
from runner.worker.shared.formats import Format

DEFAULT = ("airlock-sandbox:0123456789abcdef", "sha256:default")
TF_BUILD = "airlock image build --with tensorflow"


class Engine:
    """The engine's image calls, faked: tags -> (id, size)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images: dict[str, tuple[str, int]] = {}
        self.builds: list[str] = []
        self.removed: list[str] = []
        self.fail: Exception | None = None
        eng = fi._docker
        monkeypatch.setattr(eng, "image_id", lambda t: self.images.get(t, (None, 0))[0])
        monkeypatch.setattr(eng, "image_size", lambda t: self.images.get(t, (None, None))[1])
        monkeypatch.setattr(
            eng, "image_tags", lambda repo: sorted(t for t in self.images if t.startswith(repo))
        )
        monkeypatch.setattr(eng, "remove_image", self._remove)
        monkeypatch.setattr(images, "require_current", lambda: DEFAULT)
        monkeypatch.setattr(fi, "build", self._build)

    def _remove(self, tag: str) -> bool:
        self.removed.append(tag)
        return self.images.pop(tag, None) is not None

    def _build(self, framework: str, say: fi.Log) -> str:
        time.sleep(0.05)  # long enough for a racing thread to arrive
        if self.fail is not None:
            raise self.fail
        self.builds.append(framework)
        tag = fi.current_tag(framework)
        self.images[tag] = ("sha256:tf", 3_000_000_000)
        return "sha256:tf"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Engine:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(fi.AUTO_BUILD_ENV, raising=False)
    monkeypatch.setattr(fi, "_failed", {})
    return Engine(monkeypatch)


# --- the table ---------------------------------------------------------------------------------


def test_the_table_names_the_image_each_format_needs() -> None:
    assert table.framework_for("savedmodel") == "tensorflow"
    for fmt in Format:
        if fmt is not Format.SAVEDMODEL:
            assert table.framework_for(fmt.value) is None, fmt
    assert table.framework_for("no-such-format") is None
    assert set(table.FORMAT_FRAMEWORKS.values()) <= set(table.FRAMEWORKS)
    assert fi.needed(["onnx", "savedmodel", "gguf", "savedmodel"]) == ["tensorflow"]
    assert fi.needed(["onnx", "keras", "tflite"]) == []


def test_each_framework_has_its_sources_and_a_hashed_lock_disjoint_from_the_default() -> None:
    default = _pins(images.IMAGES_DIR / "requirements.lock")
    for framework in table.FRAMEWORKS:
        src = fi.sources(framework)
        assert src.dockerfile.is_file() and (src.directory / "requirements.in").is_file()
        lines = [ln for ln in src.lock.read_text().splitlines() if ln and ln[0] != "#"]
        assert lines and all(" --hash=sha256:" in ln for ln in lines)
        pins = _pins(src.lock)
        assert not set(pins) & set(default), "the default image's packages are not replaced"
    assert _pins(fi.sources("tensorflow").lock)["tensorflow-cpu"] == "2.21.0"
    wanted = (images.IMAGES_DIR / "tensorflow" / "requirements.in").read_text()
    assert "tensorflow-cpu==2.21.0" in wanted


def _pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.split()[0].partition("==")
            found[name] = version
    return found


def test_an_unknown_framework_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="no framework image named 'pytorch'"):
        fi.known("pytorch")
    assert main(["image", "build", "--with", "pytorch"]) == 2
    assert "use one of: tensorflow" in capsys.readouterr().err


def test_the_workers_message_names_both_images_and_the_command() -> None:
    msg = table.wrong_image("savedmodel", running="default")
    assert msg == (
        "a TensorFlow SavedModel needs the tensorflow sandbox image, and this sandbox runs the "
        f"default image (no TensorFlow): build it with '{TF_BUILD}'"
    )
    assert "\n" not in msg


# --- the tag -----------------------------------------------------------------------------------


def test_the_tag_is_the_default_images_digest_and_the_frameworks_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = fi.current_tag("tensorflow", "a" * 64)
    assert tag.startswith("airlock-sandbox-tensorflow:") and len(tag.split(":")[1]) == 16
    assert fi.current_tag("tensorflow", "a" * 64) == tag  # stable
    assert fi.current_tag("tensorflow", "b" * 64) != tag  # a new default image: stale
    assert fi.current_tag("tensorflow") == fi.current_tag("tensorflow", images.content_digest())
    copy = tmp_path / "sandbox_images"
    shutil.copytree(images.IMAGES_DIR, copy)
    monkeypatch.setattr(images, "IMAGES_DIR", copy)
    assert fi.current_tag("tensorflow", "a" * 64) == tag  # the same bytes elsewhere
    lock = copy / "tensorflow" / "requirements.lock"
    lock.write_text(lock.read_text() + "extra==1.0 --hash=sha256:00\n")
    assert fi.current_tag("tensorflow", "a" * 64) != tag
    lock.write_text(lock.read_text().replace("extra==1.0 --hash=sha256:00\n", ""))
    assert fi.current_tag("tensorflow", "a" * 64) == tag
    docker = copy / "tensorflow" / "Dockerfile"
    docker.write_text(docker.read_text() + "# a change\n")
    assert fi.current_tag("tensorflow", "a" * 64) != tag


# --- current, stale, missing -------------------------------------------------------------------


def test_states_and_sizes(engine: Engine) -> None:
    st = fi.status("tensorflow")
    assert st.state is images.ImageState.MISSING and st.image_id is None
    assert TF_BUILD in st.describe()
    engine.images["airlock-sandbox-tensorflow:00000000000000ff"] = ("sha256:old", 1)
    st = fi.status("tensorflow")
    assert st.state is images.ImageState.STALE
    assert st.other_tags == ["airlock-sandbox-tensorflow:00000000000000ff"]
    assert "found older" in st.describe() and TF_BUILD in st.describe()
    engine.images[fi.current_tag("tensorflow")] = ("sha256:tf", 3_170_000_000)
    st = fi.status("tensorflow")
    assert st.state is images.ImageState.CURRENT and st.size_bytes == 3_170_000_000
    assert "is current" in st.describe() and "3.17 GB" in st.describe()
    assert fi.stale_tags() == ["airlock-sandbox-tensorflow:00000000000000ff"]
    assert fi.remove_stale() == ["airlock-sandbox-tensorflow:00000000000000ff"]
    assert fi.stale_tags() == [] and fi.current_tag("tensorflow") in engine.images


def test_image_status_lists_every_image(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    default = images.ImageStatus(
        images.ImageState.CURRENT, DEFAULT[0], DEFAULT[1], [], 1_800_000_000
    )
    monkeypatch.setattr(images, "status", lambda: default)
    assert main(["image", "status"]) == 0  # a framework image missing is no failure
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("default:") and "1.80 GB" in out[0]
    assert out[1].startswith("tensorflow:") and TF_BUILD in out[1]
    engine.images[fi.current_tag("tensorflow")] = ("sha256:tf", 3_180_000_000)
    assert main(["image", "status"]) == 0
    assert "1.38 GB over the default" in capsys.readouterr().out


# --- the image a model gets ---------------------------------------------------------------------


def test_a_format_without_a_framework_gets_the_default_image(engine: Engine) -> None:
    for fmt in ("onnx", "keras", "gguf", "tflite", "joblib", "skops", "numpy", "huggingface"):
        assert fi.image_for(fmt) == DEFAULT
    assert engine.builds == []


def test_a_savedmodel_builds_the_tensorflow_image_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="runner.controller.framework_images")
    notes: list[str] = []
    tag, image = fi.image_for("savedmodel", notes=notes)
    assert tag == fi.current_tag("tensorflow") and image == "sha256:tf"
    assert notes == [
        "the tensorflow sandbox image was built (or waited for) before this "
        "sandbox started: 0 s, counted in the preflight phase"
    ]
    assert engine.builds == ["tensorflow"]
    (first,) = [r.getMessage() for r in caplog.records]
    assert first.startswith("a TensorFlow SavedModel needs the tensorflow sandbox image: ")
    assert "(2 to 4 minutes; " in first and TF_BUILD in first
    engine.images["airlock-sandbox-tensorflow:00000000000000ff"] = ("sha256:old", 1)
    assert fi.estimate("tensorflow") == "about a minute"  # its own stage cached
    assert fi.image_for("savedmodel", notes=notes) == (tag, image)
    assert engine.builds == ["tensorflow"] and len(notes) == 1  # current: no note


def test_auto_build_off_is_one_line_naming_the_command(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fi.AUTO_BUILD_ENV, "0")
    with pytest.raises(UsageError) as e:
        fi.image_for("savedmodel")
    assert engine.builds == []
    line = e.value.diagnostics()
    assert line == (
        "a TensorFlow SavedModel needs the tensorflow sandbox image, which is not built "
        f"(AIRLOCK_AUTO_BUILD=0); build it with '{TF_BUILD}'"
    )
    engine.images[fi.current_tag("tensorflow")] = ("sha256:tf", 1)
    assert fi.image_for("savedmodel")[1] == "sha256:tf"  # built: no build needed


def test_builds_never_race_and_a_failed_one_is_not_retried(engine: Engine) -> None:
    got: list[tuple[str, str]] = []
    threads = [
        threading.Thread(target=lambda: got.append(fi.ensure("tensorflow"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.builds == ["tensorflow"] and len(set(got)) == 1 and len(got) == 4
    engine.images.clear()
    engine.fail = ImageError("the image build failed: no space left")
    with pytest.raises(ImageError, match="no space left"):
        fi.ensure("tensorflow")
    engine.fail = None
    with pytest.raises(ImageError, match="no space left"):  # the same process: not again
        fi.ensure("tensorflow")
    assert engine.builds == ["tensorflow"]


def test_another_process_holding_the_build_lock_is_waited_for(
    engine: Engine, tmp_path: Path
) -> None:
    lock = tmp_path / "cache" / "airlock" / "locks" / "image-tensorflow.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(lock)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.write('pid 4242'); f.flush(); print('held', flush=True); time.sleep(1.0)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        said: list[str] = []
        start = time.monotonic()
        with fi.build_lock("tensorflow", said.append):
            waited = time.monotonic() - start
    finally:
        holder.wait(timeout=10)
    assert said == ["waiting for another build of the tensorflow image (pid 4242)"]
    assert waited > 0.3


def test_a_pooled_sandbox_is_checked_not_chosen(engine: Engine) -> None:
    with pytest.raises(UsageError) as e:
        fi.image_for("savedmodel", pooled=DEFAULT)
    assert "needs the tensorflow sandbox image" in e.value.message
    assert "formats=('savedmodel',)" in e.value.hint
    tf = (fi.current_tag("tensorflow"), "sha256:tf")
    assert fi.image_for("onnx", pooled=tf) == tf  # the default image's formats load there too
    assert fi.image_for("savedmodel", pooled=tf) == tf
    assert fi.image_for_formats(("onnx",)) == DEFAULT
    assert fi.image_for_formats(("onnx", "savedmodel"))[0] == tf[0]
    assert engine.builds == ["tensorflow"]


def test_a_batch_builds_once_before_its_sandboxes(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = []
    for i in range(3):
        d = tmp_path / f"sm{i}"
        d.mkdir()
        (d / "saved_model.pb").write_bytes(b"\x08\x01")
        models.append(d)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not a model")
    formats = fi.formats_of([*models, onnx, tmp_path / "gone"])
    assert formats == ["savedmodel"]
    assert fi.prepare(formats) == ["tensorflow"]
    assert fi.prepare(formats) == ["tensorflow"] and engine.builds == ["tensorflow"]
    engine.images.clear()
    engine.fail = ImageError("the image build failed: disk")
    caplog.set_level("WARNING", logger="runner.controller.framework_images")
    assert fi.prepare(formats) == []  # logged; each model then fails with the same error
    assert "the tensorflow sandbox image: the image build failed: disk" in caplog.text


def test_gc_removes_stale_framework_images(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.controller import sessions

    monkeypatch.setattr(sessions, "reap", lambda everything=False: sessions.Reaped([], []))
    engine.images["airlock-sandbox-tensorflow:00000000000000aa"] = ("sha256:old", 1)
    engine.images[fi.current_tag("tensorflow")] = ("sha256:tf", 1)
    assert main(["gc"]) == 0
    printed = capsys.readouterr()
    assert "0 directory(ies) and 1 stale framework image(s)" in printed.out
    assert "removed airlock-sandbox-tensorflow:00000000000000aa" in printed.err
    assert list(engine.images) == [fi.current_tag("tensorflow")]


def test_evaluate_prepares_the_images_before_the_first_sandbox(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.backends import local
    from runner.backends.base import Outcome
    from runner.batch import evaluation

    order: list[str] = []
    d = tmp_path / "models" / "sm"
    d.mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"\x08\x01")

    def evaluate_one(path: Path, *args: object) -> Outcome:
        order.append(f"sandbox {path.name}, built {engine.builds}")
        return evaluation.failed_result(path, "", RuntimeError("fake"))

    monkeypatch.setattr(evaluation, "evaluate_one", evaluate_one)
    monkeypatch.setattr(local._docker, "client", lambda: None)
    results = list(evaluation.evaluate([tmp_path / "models"], jobs=1))
    assert len(results) == 1
    assert order == ["sandbox sm, built ['tensorflow']"]
