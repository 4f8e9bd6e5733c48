"""Fuzzing what the Hugging Face cache reads from hostile places: repo ids from the command line,
refs files and cache folder names. Each never raises (UsageError only, where it is the answer),
never hangs, and what it accepts is safe to join to a path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import UsageError
from runner.hf import cache

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ID_ALPHABET = st.sampled_from([*list("abAB09._-/@\\ \n\x00~:%"), "..", "--", "é"])
ids = st.one_of(st.text(max_size=300), st.lists(ID_ALPHABET, max_size=60).map("".join))


@FUZZ
@given(ids)
def test_parse_repo_id_never_raises_and_accepts_only_safe_names(text: str) -> None:
    parsed = cache.parse_repo_id(text)
    if parsed is None:
        return
    repo, rev = parsed
    parts = repo.split("/")
    assert 1 <= len(parts) <= 2 and len(text) <= cache.MAX_ID_CHARS
    for p in [*parts, *(rev.split("/") if rev else [])]:
        assert p not in ("", ".", "..") and not p.startswith((".", "-"))
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p)
    assert cache.repo_id_of(cache.folder_name(repo)) == repo  # its cache folder names it back


@FUZZ
@given(st.text(max_size=200))
def test_folder_names_never_raise(name: str) -> None:
    rid = cache.repo_id_of(name)
    if rid is not None:
        assert cache.parse_repo_id(rid) == (rid, "")


@FUZZ
@given(ids)
def test_resolve_raises_only_usage_errors(text: str) -> None:
    env = {"HF_HUB_CACHE": "/nonexistent/airlock-fuzz", "HOME": "/nonexistent"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("HF_HOME", raising=False)
        try:
            cache.resolve_repo_id(text)
        except UsageError as e:
            assert "\n" not in e.message
        else:
            raise AssertionError("found in a cache that does not exist")


@pytest.fixture(scope="module")
def refs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refs")


@FUZZ
@given(st.binary(max_size=600))
def test_read_ref_never_raises_and_returns_only_a_commit(refs_dir: Path, data: bytes) -> None:
    ref = refs_dir / "main"
    ref.write_bytes(data)
    got = cache.read_ref(ref)
    assert got is None or re.fullmatch(r"[0-9a-f]{40}", got)
    if got is not None:
        assert got.encode() in data
    os.unlink(ref)
