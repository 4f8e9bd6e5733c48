"""A session's directories go whatever the model left in them: here a tree deeper than
Python's recursion limit (a model can build one in its run directory)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from runner.controller import sessions


def test_a_tree_deeper_than_the_recursion_limit_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "tmp_base", lambda: tmp_path)
    root = tmp_path / f"{sessions.DIR_PREFIX}deadbeef0001"
    (root / "run").mkdir(parents=True)
    fd = os.open(root / "run", os.O_RDONLY)
    try:
        for _ in range(sys.getrecursionlimit() + 100):  # bounded, relative names: no long path
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    sessions.remove_dirs(root)
    assert not root.exists()


def test_a_tree_deeper_than_the_descriptors_left_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resource

    monkeypatch.setattr(sessions, "tmp_base", lambda: tmp_path)
    root = tmp_path / f"{sessions.DIR_PREFIX}deadbeef0002"
    deep = root / "run"
    deep.mkdir(parents=True)
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(300):  # shallower than the recursion limit, deeper than 64 descriptors
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        sessions.remove_dirs(root)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not root.exists()
