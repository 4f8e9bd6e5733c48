"""An adapter's base model on the host (runner.hf.base): --base as a directory, a cache
repository folder, a snapshot or ORG/NAME[@REV]; with no --base, the repo id adapter_config.json
names, looked up in the local cache only (never as a path, never the network); the snapshot made
a plain directory in the session's own work directory, which is removed with the model's, on
failure and on Ctrl-C too. Cache layouts are built in tmp_path."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.controller import images, sessions
from runner.controller.sandbox import Sandbox
from runner.errors import UsageError
from runner.hf import base, cache, snapshot
from tests.unit.test_hf_cache import REV, make_repo

REV2 = "c" * 40
BASE_FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"weights"}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hub"
    root.mkdir()
    for var in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root


@pytest.fixture
def tmp_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "tmpbase"
    where.mkdir()
    monkeypatch.setattr(sessions, "tmp_base", lambda: where)
    return where


def adapter(where: Path, config: Any) -> Path:
    where.mkdir(parents=True)
    raw = config if isinstance(config, bytes) else json.dumps(config).encode()
    (where / "adapter_config.json").write_bytes(raw)
    (where / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    return where


def _lora(base_id: object) -> dict[str, Any]:
    return {"peft_type": "LORA", "r": 4, "base_model_name_or_path": base_id}


def _plain_files(made: Path) -> dict[str, bytes]:
    out = {}
    for p in made.rglob("*"):
        assert not p.is_symlink(), p
        if p.is_file():
            out[str(p.relative_to(made))] = p.read_bytes()
    return out


# --- what the adapter names ----------------------------------------------------------------------


def test_named_base_takes_a_repo_id(tmp_path: Path) -> None:
    assert base.named_base(adapter(tmp_path / "a", _lora("org/tiny-bert"))) == ("org/tiny-bert", "")
    assert base.named_base(adapter(tmp_path / "b", _lora("gpt2"))) == ("gpt2", "")


def test_named_base_of_no_adapter_is_nothing(tmp_path: Path) -> None:
    assert base.named_base(tmp_path) == (None, "")
    assert base.named_base(tmp_path / "missing") == (None, "")
    (tmp_path / "f").write_text("x")
    assert base.named_base(tmp_path / "f") == (None, "")


@pytest.mark.parametrize(
    "value",
    [
        "/etc/passwd",
        "../models/base",
        "./base",
        "~/models/base",
        "org/name/../../etc",
        "org/name@main",
        "a/b/c",
        "x" * 300,
        "org/na\nme",
        "\u202eorg/name",
        12,
        ["org/name"],
        {"org": "name"},
    ],
)
def test_named_base_refuses_what_is_no_repo_id(tmp_path: Path, value: object) -> None:
    repo_id, why = base.named_base(adapter(tmp_path / "a", _lora(value)))
    assert repo_id is None and "is not a Hugging Face repo id" in why
    assert "\n" not in why and "\u202e" not in why


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{", "not valid JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"a": 1, "a": 2}', "refused"),
        (b"{}", "names no base model"),
        (b'{"base_model_name_or_path": null}', "names no base model"),
        (b" " * (2 << 20), "larger than"),
    ],
)
def test_an_unreadable_adapter_config_names_no_base(tmp_path: Path, raw: bytes, why: str) -> None:
    repo_id, said = base.named_base(adapter(tmp_path / "a", raw))
    assert repo_id is None and why in said


def test_an_adapter_config_through_a_symlink_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(_lora("org/tiny-bert")))
    model = tmp_path / "a"
    model.mkdir()
    (model / "adapter_config.json").symlink_to(outside)
    repo_id, why = base.named_base(model)
    assert repo_id is None and "cannot be read" in why


def test_an_adapter_in_a_cache_snapshot_is_read_through_its_blob(hub: Path, tmp_path: Path) -> None:
    """run's early check sees the adapter as the caller named it: a snapshot of symlinks."""
    config = json.dumps(_lora("org/tiny-bert")).encode()
    snap = make_repo(hub, "org/adapter", {"adapter_config.json": config})
    assert (snap / "adapter_config.json").is_symlink()
    assert base.named_base(snap) == ("org/tiny-bert", "")
    outside = tmp_path / "outside.json"  # a link out of the repository is not followed
    outside.write_bytes(config)
    other = make_repo(hub, "org/other", {})
    (other / "adapter_config.json").symlink_to(outside)
    repo_id, why = base.named_base(other)
    assert repo_id is None and "cannot be read" in why


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=250), st.integers(), st.none(), st.lists(st.text(), max_size=3)))
def test_named_base_never_raises(value: object) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        model = adapter(Path(d) / "a", _lora(value))
        repo_id, why = base.named_base(model)
        assert (repo_id is None) == bool(why)
        if repo_id is not None:
            assert cache.parse_repo_id(repo_id) == (repo_id, "")


# --- with no --base: the cache, and only the cache ---------------------------------------------


def test_a_cached_base_is_materialised_and_noted(hub: Path, tmp_base: Path, tmp_path: Path) -> None:
    make_repo(hub, "org/tiny-bert", BASE_FILES)
    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))
    notes: list[str] = []
    made = base.resolve(None, model, "s1", notes)
    assert made is not None and made.parent == tmp_base / "airlock-hf-s1-base"
    assert _plain_files(made) == BASE_FILES  # hard links: the sandbox needs no ../../blobs
    assert (made.parent / "owner.json").is_file()  # `airlock gc` reaps it by this
    assert notes == [f"base model org/tiny-bert@{REV} found in the Hugging Face cache"]
    assert base.cached_base(model) == hub / "models--org--tiny-bert" / "snapshots" / REV
    snapshot.remove_work_dir("s1")
    assert list(tmp_base.iterdir()) == []


def test_a_base_not_in_the_cache_is_described_and_says_how(
    hub: Path, tmp_base: Path, tmp_path: Path
) -> None:
    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))
    notes: list[str] = []
    assert base.resolve(None, model, "s1", notes) is None
    assert base.cached_base(model) is None
    (note,) = notes
    assert "org/tiny-bert is not in the Hugging Face cache" in note and str(hub) in note
    assert "--base DIR" in note and "download it" in note
    assert list(tmp_base.iterdir()) == []


def test_a_path_in_the_adapter_config_is_never_followed(
    hub: Path, tmp_base: Path, tmp_path: Path
) -> None:
    """A real repository at the path the file names, and one in the cache under the names a
    path would be read as: neither is used."""
    real = tmp_path / "org" / "tiny-bert"
    real.mkdir(parents=True)
    (real / "config.json").write_text("{}")
    snap = make_repo(hub, "org/tiny-bert", BASE_FILES)
    for value in (str(real), f"{hub}/models--org--tiny-bert", str(snap), "../org/tiny-bert"):
        model = adapter(tmp_path / f"adapter{abs(hash(value))}", _lora(value))
        notes: list[str] = []
        assert base.resolve(None, model, "s1", notes) is None
        assert "is not a Hugging Face repo id" in notes[0] and "--base DIR" in notes[0]
    assert list(tmp_base.iterdir()) == []


def test_a_symlinked_cache_folder_is_not_a_cached_base(
    hub: Path, tmp_base: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_repo(elsewhere, "org/tiny-bert", BASE_FILES)
    (hub / "models--org--tiny-bert").symlink_to(elsewhere / "models--org--tiny-bert")
    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))
    assert base.resolve(None, model, "s1", []) is None


def test_no_adapter_no_base(hub: Path, tmp_base: Path, tmp_path: Path) -> None:
    notes: list[str] = []
    assert base.resolve(None, tmp_path, "s1", notes) is None
    assert notes == [] and list(tmp_base.iterdir()) == []


def test_a_cached_base_the_snapshot_cannot_carry_is_left_out(
    hub: Path, tmp_base: Path, tmp_path: Path
) -> None:
    snap = make_repo(hub, "org/tiny-bert", BASE_FILES)
    os.mkfifo(snap / "pipe")
    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))
    notes: list[str] = []
    assert base.resolve(None, model, "s1", notes) is None
    assert "found in the Hugging Face cache" in notes[0]
    assert "the base model's cache snapshot was not used" in notes[1] and "pipe" in notes[1]
    assert list(tmp_base.iterdir()) == []


# --- --base as given --------------------------------------------------------------------------


def test_base_as_a_repo_id_a_repo_folder_or_a_snapshot(
    hub: Path, tmp_base: Path, tmp_path: Path
) -> None:
    snap = make_repo(hub, "org/tiny-bert", BASE_FILES)
    make_repo(hub, "org/tiny-bert", {"config.json": b"{}"}, rev=REV2, ref=None)
    model = adapter(tmp_path / "adapter", _lora("org/other"))  # --base wins over the file
    given = {
        "org/tiny-bert": REV,
        f"org/tiny-bert@{REV2[:8]}": REV2,
        str(hub / "models--org--tiny-bert"): REV,  # refs/main
        str(snap): REV,
    }
    for n, (text, rev) in enumerate(given.items()):
        notes: list[str] = []
        located = base.locate(Path(text))
        made = base.resolve(located, model, f"s{n}", notes)
        assert made is not None and made.parent == tmp_base / f"airlock-hf-s{n}-base"
        assert notes == [f"base model org/tiny-bert@{rev} from the Hugging Face cache"]
        assert (made / "config.json").is_file() and not (made / "config.json").is_symlink()
        snapshot.remove_work_dir(f"s{n}")
    assert list(tmp_base.iterdir()) == []


def test_base_as_a_plain_directory_is_used_as_it_is(tmp_base: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    notes: list[str] = []
    assert base.resolve(plain, tmp_path / "adapter", "s1", notes) == plain
    assert notes == [] and list(tmp_base.iterdir()) == []


def test_base_as_a_repo_id_not_in_the_cache_is_a_usage_error(hub: Path) -> None:
    with pytest.raises(UsageError) as e:
        base.locate(Path("org/missing"))
    assert e.value.message.startswith("--base org/missing is not in the Hugging Face cache")
    assert "huggingface-cli download org/missing" in e.value.hint


def test_base_as_a_snapshot_the_sandbox_cannot_carry_is_a_usage_error(
    hub: Path, tmp_base: Path, tmp_path: Path
) -> None:
    snap = make_repo(hub, "org/tiny-bert", BASE_FILES)
    os.mkfifo(snap / "pipe")
    with pytest.raises(UsageError) as e:
        base.resolve(snap, tmp_path, "s1", [])
    assert "the base model's cache snapshot was not used" in e.value.message
    assert list(tmp_base.iterdir()) == []


def test_the_cli_option_reads_base_as_the_model_argument(hub: Path) -> None:
    from runner.cli import options

    snap = make_repo(hub, "org/tiny-bert", BASE_FILES)
    assert options._located_base(None) is None
    assert options._located_base(Path("org/tiny-bert")) == snap


# --- cleanup: on failure, on Ctrl-C, and with the sandbox ------------------------------------


def test_a_failed_materialisation_leaves_nothing_and_keeps_the_models_dir(
    hub: Path, tmp_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_repo(hub, "org/tiny-bert", BASE_FILES)
    model_snap = make_repo(hub, "org/adapter", {"adapter_config.json": b"{}"})
    prepared = snapshot.prepare(model_snap, "s1", [])
    assert prepared is not None
    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))

    def interrupted(*a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot, "_link_or_copy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        base.resolve(None, model, "s1", [])
    assert [p.name for p in tmp_base.iterdir()] == ["airlock-hf-s1"]  # the model's stays
    snapshot.remove_work_dir("s1")
    assert list(tmp_base.iterdir()) == []


def test_a_sandbox_removes_the_base_on_ctrl_c(
    hub: Path, tmp_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C once the base is materialised (here: as the container would start) leaves no
    work directory behind; the report's notes say where the base came from."""
    make_repo(hub, "org/tiny-bert", BASE_FILES)
    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))
    monkeypatch.setattr(images, "require_current", lambda: ("airlock:test", "sha256:0"))
    seen: list[Path | None] = []

    def launch(self: Sandbox, warm: bool = False) -> None:
        seen.append(self.base)
        assert self.base is not None and (self.base / "config.json").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(Sandbox, "_launch", launch)
    sb = Sandbox(model)
    with pytest.raises(KeyboardInterrupt):
        sb.open()
    assert seen and seen[0] is not None
    assert seen[0].parent == tmp_base / f"airlock-hf-{sb.session}-base"
    assert not [p for p in tmp_base.iterdir() if p.name.startswith("airlock-")]
    assert any("found in the Hugging Face cache" in n for n in sb.notes)


def test_the_early_usage_check_counts_a_cached_base(hub: Path, tmp_path: Path) -> None:
    """run's check before a sandbox starts (runner.cli.models.run_model) passes the base the
    adapter names when it is cached, and still stops an adapter whose base is nowhere."""
    from runner.static.weights import check_usage

    model = adapter(tmp_path / "adapter", _lora("org/tiny-bert"))
    with pytest.raises(UsageError, match="is a PEFT adapter"):
        check_usage(model, None, "auto", True, base.cached_base(model))
    make_repo(hub, "org/tiny-bert", BASE_FILES)
    check_usage(model, None, "auto", True, base.cached_base(model))
