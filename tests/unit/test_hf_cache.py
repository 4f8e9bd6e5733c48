"""The Hugging Face cache on the host: names, roots, snapshots, repo ids resolved from the cache
only, and a snapshot materialised as a plain directory (layouts built in tmp_path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from runner.controller import sessions
from runner.errors import UsageError
from runner.hf import cache, snapshot
from runner.report import HfInfo, ModelInfo

REV = "a" * 40
REV2 = "b" * 40


def make_repo(
    root: Path,
    repo_id: str,
    files: dict[str, bytes],
    rev: str = REV,
    ref: str | None = "main",
) -> Path:
    """A cache repository folder with one snapshot whose files are symlinks into blobs/."""
    repo = root / cache.folder_name(repo_id)
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    for rel, data in files.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(rev)
    return snap


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hub"
    root.mkdir()
    for var in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("org/name", ("org/name", "")),
        ("gpt2", ("gpt2", "")),
        ("org/name@main", ("org/name", "main")),
        ("org/name@" + REV, ("org/name", REV)),
        ("org/name@refs/pr/1", ("org/name", "refs/pr/1")),
        ("Org-1/some.name_2", ("Org-1/some.name_2", "")),
    ],
)
def test_repo_ids_parse(text: str, parsed: tuple[str, str]) -> None:
    assert cache.parse_repo_id(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "../etc",
        "a/../b",
        "a/b/c",
        "/abs/path",
        "./model",
        "org/na--me",
        "org/name@",
        "org/name@../x",
        "org/name@a/../../b",
        "org/.hidden",
        "o" * 97 + "/x",
        "org/" + "n" * 300,
        "org/name\n",
        "org/na me",
    ],
)
def test_bad_repo_ids_are_refused(text: str) -> None:
    assert cache.parse_repo_id(text) is None


def test_folder_names_round_trip() -> None:
    assert cache.folder_name("org/name") == "models--org--name"
    assert cache.repo_id_of("models--org--name") == "org/name"
    assert cache.repo_id_of("models--gpt2") == "gpt2"
    assert cache.repo_id_of("datasets--org--name") is None
    assert cache.repo_id_of("models--a--b--c") is None
    assert cache.repo_id_of("models--") is None


# --- roots and snapshots -------------------------------------------------------------------------


def test_cache_roots_in_precedence_order_existing_and_deduplicated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_cache, home = tmp_path / "c", tmp_path / "h"
    (home / "hub").mkdir(parents=True)
    hub_cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.cache_roots() == [hub_cache, home / "hub"]
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))  # the same twice: listed once
    assert cache.cache_roots() == [home / "hub"]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "missing"))
    monkeypatch.delenv("HF_HUB_CACHE")
    assert cache.cache_roots() == []


def test_snapshot_of_a_snapshot_and_of_what_is_inside_it(hub: Path) -> None:
    snap = make_repo(hub, "org/name", {"config.json": b"{}", "onnx/model.onnx": b"x"})
    for p in (snap, snap / "config.json", snap / "onnx", snap / "onnx" / "model.onnx"):
        found = cache.snapshot_of(p)
        assert found is not None
        assert (found.repo_id, found.revision, found.path) == ("org/name", REV, snap)
    gpt2 = make_repo(hub, "gpt2", {"config.json": b"{}"})
    assert cache.snapshot_of(gpt2) is not None
    assert cache.snapshot_of(gpt2).repo_id == "gpt2"  # type: ignore[union-attr]
    assert cache.snapshot_of(hub) is None
    assert cache.snapshot_of(snap.parent) is None  # snapshots/ itself


def test_a_snapshot_that_is_a_symlink_elsewhere_is_no_snapshot(hub: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (hub / "models--org--x" / "snapshots").mkdir(parents=True)
    (hub / "models--org--x" / "snapshots" / REV).symlink_to(elsewhere)
    assert cache.snapshot_of(hub / "models--org--x" / "snapshots" / REV) is None


def test_snapshots_of_a_root_every_repo_every_revision_sorted(hub: Path) -> None:
    make_repo(hub, "zed/b", {"config.json": b"{}"})
    make_repo(hub, "org/a", {"config.json": b"1"}, rev=REV2)
    make_repo(hub, "org/a", {"config.json": b"2"}, rev=REV, ref=None)
    (hub / "datasets--org--d").mkdir()
    (hub / ".locks").mkdir()
    (hub / "models--org--link").symlink_to(hub / "models--org--a")  # never followed
    listing = cache.scan_cache(hub)
    assert [(s.repo_id, s.revision) for s in listing.snapshots] == [
        ("org/a", REV),
        ("org/a", REV2),
        ("zed/b", REV),
    ]
    assert {Path(p).name for p, _ in listing.skipped} == {"datasets--org--d", ".locks"}
    assert cache.is_cache_root(hub)
    assert not cache.is_cache_root(hub / "models--org--a")
    assert [s.revision for s in cache.snapshots(hub / "models--org--a")] == [REV, REV2]


def test_listing_is_bounded(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        make_repo(hub, f"org/m{i}", {"config.json": b"{}"})
    monkeypatch.setattr(cache, "MAX_REPOS", 3)
    listing = cache.scan_cache(hub)
    assert len(listing.snapshots) == 3
    assert any("stopped at 3" in why for _, why in listing.skipped)


def test_cache_listing_knows_hf_home_a_root_a_repo_and_a_snapshot(hub: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})
    for p in (hub.parent, hub, hub / "models--org--a", snap):
        listing = cache.cache_listing(p)
        assert listing is not None and [s.path for s in listing.snapshots] == [snap]
    assert cache.cache_listing(hub / "models--org--a" / "blobs") is None


# --- repo ids from the cache ---------------------------------------------------------------------


def test_resolve_by_refs_main_branch_full_and_short_commit(hub: Path) -> None:
    make_repo(hub, "org/a", {"config.json": b"1"}, rev=REV2, ref="dev")
    snap = make_repo(hub, "org/a", {"config.json": b"2"}, rev=REV)
    assert cache.resolve_repo_id("org/a") == snap
    assert cache.resolve_repo_id("org/a@main") == snap
    assert cache.resolve_repo_id("org/a@dev").name == REV2
    assert cache.resolve_repo_id(f"org/a@{REV2}").name == REV2
    assert cache.resolve_repo_id("org/a@bbbbbbb").name == REV2


def test_resolve_without_refs_takes_the_only_snapshot(hub: Path) -> None:
    snap = make_repo(hub, "gpt2", {"config.json": b"{}"}, ref=None)
    assert cache.resolve_repo_id("gpt2") == snap


def test_not_in_the_cache_names_the_cache_and_how_to_get_it(hub: Path) -> None:
    with pytest.raises(UsageError) as e:
        cache.resolve_repo_id("org/missing")
    assert str(hub) in e.value.message and "org/missing" in e.value.message
    assert "huggingface-cli download org/missing" in (e.value.hint or "")
    assert "\n" not in e.value.diagnostics()
    make_repo(hub, "org/a", {"config.json": b"{}"})
    with pytest.raises(UsageError, match="at revision nope"):
        cache.resolve_repo_id("org/a@nope")
    with pytest.raises(UsageError, match="not a Hugging Face repo id"):
        cache.resolve_repo_id("../../etc")


@pytest.mark.parametrize(
    "content",
    [b"not a hash", b"b" * 40 + b"x" * 300, ("c" * 40).encode(), b"../../" + b"a" * 34],
)
def test_a_refs_file_is_untrusted(hub: Path, content: bytes) -> None:
    make_repo(hub, "org/a", {"config.json": b"{}"}, rev=REV, ref=None)
    make_repo(hub, "org/a", {"config.json": b"{}"}, rev=REV2, ref=None)
    (hub / "models--org--a" / "refs").mkdir()
    (hub / "models--org--a" / "refs" / "main").write_bytes(content)
    with pytest.raises(UsageError, match="not in the Hugging Face cache"):
        cache.resolve_repo_id("org/a")  # two snapshots, no ref that holds: none is guessed


def test_a_refs_file_that_is_a_symlink_or_fifo_is_not_read(hub: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").write_text(REV)
    make_repo(hub, "org/a", {"config.json": b"{}"}, rev=REV, ref=None)
    make_repo(hub, "org/a", {"config.json": b"{}"}, rev=REV2, ref=None)
    refs = hub / "models--org--a" / "refs"
    refs.mkdir()
    (refs / "main").symlink_to(tmp_path / "outside")
    os.mkfifo(refs / "dev")
    assert cache.read_ref(refs / "main") is None
    assert cache.read_ref(refs / "dev") is None  # never opened for reading: no hang


def test_locate_paths_ids_and_repo_folders(hub: Path, tmp_path: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    assert cache.locate(model) == model
    assert cache.locate(Path("org/a")) == snap
    assert cache.locate(hub / "models--org--a") == snap
    assert cache.locate(Path("nothing.onnx")) == Path("nothing.onnx")  # check_request says
    with pytest.raises(UsageError, match="no such file or directory"):
        cache.locate(Path("models/x.onnx"))


def test_with_origin_names_the_repository() -> None:
    snap = cache.CachedSnapshot("org/a", REV, Path("/x"), Path("/x"))
    info = cache.with_origin(HfInfo(model_type="bert"), snap)
    assert (info.repo_id, info.revision, info.model_type) == ("org/a", REV, "bert")
    assert cache.with_origin(None, snap).repo_id == "org/a"


# --- materialising -------------------------------------------------------------------------------


def test_materialise_hard_links_blobs_and_keeps_the_layout(hub: Path, tmp_path: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}", "sub/model.onnx": b"onnx"})
    out = tmp_path / "out"
    out.mkdir()
    made = snapshot.materialise(snap, out)
    assert made.parent == out and made.name == "a"
    assert (made / "config.json").read_bytes() == b"{}"
    for rel in ("config.json", "sub/model.onnx"):
        st = os.lstat(made / rel)
        assert not (made / rel).is_symlink()
        assert st.st_ino == os.stat(snap / rel).st_ino  # the blob itself, hard-linked


def test_materialise_keeps_every_other_symlink_as_one(hub: Path, tmp_path: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})
    repo = snap.parent.parent
    (tmp_path / "secret").write_text("s")
    (repo / "blobs" / "adir").mkdir()
    os.mkfifo(repo / "blobs" / "fifo")
    (repo / "refs" / "main").chmod(0o644)
    links = {
        "escape": str(tmp_path / "secret"),  # absolute, outside
        "relescape": "../../../../secret",
        "dangling": "../../blobs/" + "0" * 64,
        "to_dir": "../../blobs/adir",
        "to_fifo": "../../blobs/fifo",
        "to_refs": "../../refs/main",  # inside the repo folder, but no blob
        "out_and_back": os.path.relpath(tmp_path / "hub", snap) + "/models--org--a/blobs",
        "inner": "config.json",  # a chain inside the snapshot, ending in a blob
    }
    for name, target in links.items():
        (snap / name).symlink_to(target)
    (tmp_path / "back").symlink_to(repo / "blobs" / hashlib.sha256(b"{}").hexdigest())
    (snap / "via_outside").symlink_to(tmp_path / "back")
    out = tmp_path / "out"
    out.mkdir()
    made = snapshot.materialise(snap, out)
    assert not (made / "inner").is_symlink() and (made / "inner").read_bytes() == b"{}"
    for name in [*(n for n in links if n != "inner"), "via_outside"]:
        assert (made / name).is_symlink(), name
        target = os.readlink(made / name)
        assert os.path.isabs(target), (name, target)  # outside the copy: reads as an escape
    assert os.readlink(made / "escape") == str(tmp_path / "secret")


def test_a_kept_link_inside_the_snapshot_keeps_its_meaning(hub: Path, tmp_path: Path) -> None:
    snap = make_repo(hub, "org/a", {"sub/config.json": b"{}"})
    (snap / "alias").symlink_to("sub")  # a directory inside: kept, relative
    out = tmp_path / "out"
    out.mkdir()
    made = snapshot.materialise(snap, out)
    assert os.readlink(made / "alias") == "sub"
    assert (made / "alias" / "config.json").read_bytes() == b"{}"


def test_a_long_chain_of_links_is_not_followed(hub: Path, tmp_path: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})
    prev = "config.json"
    for i in range(snapshot.MAX_HOPS + 2):
        (snap / f"l{i}").symlink_to(prev)
        prev = f"l{i}"
    out = tmp_path / "out"
    out.mkdir()
    made = snapshot.materialise(snap, out)
    assert not (made / "l0").is_symlink()
    assert (made / prev).is_symlink()


def test_materialise_copies_when_linking_fails(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})

    def no_link(*a: object, **k: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "out"
    out.mkdir()
    made = snapshot.materialise(snap, out)
    assert (made / "config.json").read_bytes() == b"{}"
    assert os.lstat(made / "config.json").st_ino != os.stat(snap / "config.json").st_ino


def test_materialise_refuses_what_is_no_snapshot(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a Hugging Face cache snapshot"):
        snapshot.materialise(tmp_path, tmp_path)


# --- one sandbox's snapshot ----------------------------------------------------------------------


@pytest.fixture
def tmp_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "tmpbase"
    base.mkdir()
    monkeypatch.setattr(sessions, "tmp_base", lambda: base)
    return base


def test_prepare_materialises_and_removes(hub: Path, tmp_base: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})
    notes: list[str] = []
    prepared = snapshot.prepare(snap, "s1", notes)
    assert prepared is not None and notes == []
    assert prepared.path.parent == tmp_base / "airlock-hf-s1"
    assert (tmp_base / "airlock-hf-s1" / "owner.json").is_file()  # what `airlock gc` reaps by
    model = ModelInfo(
        path=str(prepared.path), format="onnx", detected_by="", size_bytes=0, files=[]
    )
    shown = prepared.shown(model)
    assert shown.path == str(snap)
    assert shown.huggingface is not None
    assert (shown.huggingface.repo_id, shown.huggingface.revision) == ("org/a", REV)
    snapshot.remove_work_dir("s1")
    assert list(tmp_base.iterdir()) == []
    assert (snap / "config.json").read_bytes() == b"{}"  # the blobs are untouched


def test_prepare_leaves_nothing_behind_when_it_fails(
    hub: Path, tmp_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})

    def interrupted(*a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot, "_link_or_copy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        snapshot.prepare(snap, "s2", [])
    assert list(tmp_base.iterdir()) == []


def test_prepare_reads_a_hostile_walk_as_it_is(hub: Path, tmp_base: Path) -> None:
    snap = make_repo(hub, "org/a", {"config.json": b"{}"})
    os.mkfifo(snap / "pipe")
    notes: list[str] = []
    prepared = snapshot.prepare(snap, "s3", notes)
    assert prepared is not None and prepared.path == snap
    assert notes and "pipe" in notes[0] and "not materialised" in notes[0]
    assert list(tmp_base.iterdir()) == []


def test_prepare_ignores_other_paths_and_follows_a_file(hub: Path, tmp_path: Path) -> None:
    assert snapshot.prepare(tmp_path, "s4", []) is None
    snap = make_repo(hub, "org/a", {"model.onnx": b"x"})
    prepared = snapshot.prepare(snap / "model.onnx", "s4", [])
    assert prepared is not None and prepared.path == snap / "model.onnx"
