"""The static pre-flight on a 1 GiB torch checkpoint, against reading and hashing the file
in-process (the least any integrity check must do): the bounded static read alone (format,
pickle imports, zip CRCs and layout) and the whole pre-flight (manifest with sha256, static
read, provenance), as `airlock preflight` runs it. No container is started."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import runner
from runner.static import preflight

SIZE = 1 << 30
REPEATS = 3


def _checkpoint(path: Path) -> Path:
    import torch

    torch.save({"weight": torch.zeros(SIZE // 4, dtype=torch.float32)}, path)
    return path


def _sha256(path: Path) -> float:
    start = time.perf_counter()
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return time.perf_counter() - start


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_preflight_on_a_1gib_checkpoint(
    tmp_path: Path, record: Callable[[str, dict[str, object]], None]
) -> None:
    path = _checkpoint(tmp_path / "big.pt")
    _sha256(path)  # warm the page cache, as a second read would find it
    base = statistics.median(_sha256(path) for _ in range(REPEATS))
    static = statistics.median(_timed(lambda: preflight.bounded(path)) for _ in range(REPEATS))
    whole = statistics.median(
        _timed(lambda: runner.Sandbox(path).preflight_report()) for _ in range(REPEATS)
    )
    result = preflight.bounded(path)
    assert not result.aborted and result.format == "torch" and not result.tamper
    size_mib = path.stat().st_size / (1 << 20)
    print(
        f"\npre-flight of a {size_mib:.0f} MiB torch checkpoint, median of {REPEATS} "
        f"(seconds; bound {result.bounds})"
    )
    print(f"{'what':<40} {'s':>7} {'x sha256':>9}")
    for name, t in (
        ("sha256 of the file, in-process", base),
        ("static read (bounded child)", static),
        ("whole pre-flight (manifest + static)", whole),
    ):
        print(f"{name:<40} {t:>7.2f} {t / base:>8.2f}x")
    record(
        "preflight",
        {
            "size_bytes": path.stat().st_size,
            "sha256_s": base,
            "static_s": static,
            "preflight_s": whole,
            "static_ratio": static / base,
            "preflight_ratio": whole / base,
        },
    )
