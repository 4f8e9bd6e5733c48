"""Hugging Face repositories inside the sandbox (being built): see runner.worker.loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def is_repo(path: Path) -> bool:
    cfg = path / "config.json"
    return path.is_dir() and cfg.is_file() and not cfg.is_symlink()


def warm(path: Path | None) -> None:
    return None


def load(path: Path, threads: int, options: Any) -> Any:
    raise NotImplementedError
