"""What the bytes of a weights file tell before anything starts: a safetensors header's tensor
names, dtypes and shapes (bounded JSON, never the tensors), and the usage mistakes that follow
from them, caught before a sandbox is launched: inputs for a state dict that has no
architecture, inputs for an adapter with no base.

ONNX graph inputs are not read here (they would need a protobuf walk of the whole graph); the
worker's describe reports them, and a wrong input name is refused by the worker's own check.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UsageError, untrusted_text

HEADER_BYTES = 10 << 20  # headers larger than this are not parsed here (runner.static.signs)
MAX_LISTED = 20
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Tensors:
    """A safetensors file's tensors: how many, and the first few (name, dtype, shape)."""

    count: int = 0
    listed: list[tuple[str, str, list[int]]] = field(default_factory=list)

    def summary(self, limit: int = 8) -> str:
        shown = ", ".join(f"{untrusted_text(n, 80)} {d} {s}" for n, d, s in self.listed[:limit])
        more = f" and {self.count - limit} more" if self.count > limit else ""
        return f"{self.count} tensors: {shown}{more}"


def _header(path: Path) -> object:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return None
        (n,) = struct.unpack("<Q", raw)
        if n > HEADER_BYTES:
            return None
        body = f.read(n)
    if len(body) < n:
        return None
    return json.loads(body)


def safetensors_tensors(path: Path) -> Tensors | None:
    """The tensors a safetensors header declares; None when it cannot be read (the static
    read's findings say why)."""
    try:
        header = _header(path)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    found = Tensors()
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        found.count += 1
        if len(found.listed) < MAX_LISTED:
            shape = info.get("shape")
            dims = [d for d in shape[:16] if isinstance(d, int)] if isinstance(shape, list) else []
            found.listed.append((str(name)[:200], str(info.get("dtype", "?"))[:16], dims))
    return found


def _regular(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False


def _weights_file(model: Path) -> Path | None:
    """The safetensors file a state dict model is: the file, or a directory's one .safetensors
    (several shards count as one model: the first is read)."""
    if _regular(model) and model.suffix == ".safetensors":
        return model
    if not model.is_dir():
        return None
    try:
        files = sorted(p for p in model.iterdir() if p.suffix == ".safetensors" and _regular(p))
    except OSError:
        return None
    return files[0] if files else None


def check_usage(
    model: Path, arch: Path | None, fmt: str, has_inputs: bool, base: Path | None
) -> None:
    """Raise the usage error a static read can already tell, before a sandbox starts."""
    if not has_inputs or arch is not None or fmt not in ("auto", "", "safetensors"):
        return
    if model.is_dir() and _regular(model / ADAPTER_CONFIG):
        if base is None:
            raise UsageError(
                f"{untrusted_text(model.name, 80)} is a PEFT adapter: it runs on its base model",
                "pass --base DIR, the base model's directory (describe works without it)",
            )
        return
    if model.is_dir() and _regular(model / "config.json"):
        return  # a Hugging Face repository: its config names the architecture
    weights = _weights_file(model)
    found = safetensors_tensors(weights) if weights is not None else None
    if found is None or found.count == 0:
        return
    raise UsageError(
        f"{untrusted_text(model.name, 80)} holds only weights ({found.count} tensors) and no "
        "architecture",
        "pass --arch FILE that defines build_model(config) (see README)",
    )
