"""The manifest: every file of a model with its size and sha256, the root digest over them
(computed the way OpenSSF model signing computes it, so it can be matched with any model
signature), and what a model directory should not hold."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict


class FileDigest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    size_bytes: int
    sha256: str


def sha256_file(f: Path) -> str:
    h = hashlib.sha256()
    with f.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_sha256(text: str) -> str | None:
    """A sha256 digest as lower-case hex, from "sha256:HEX" or "HEX"; None if it is not one."""
    value = text.strip().lower().removeprefix("sha256:")
    return value if _HEX64.match(value) else None


def shown(path: Path | str) -> str:
    """A path as text that always encodes: undecodable bytes in a name become escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_digests(path: Path) -> list[FileDigest]:
    """Every regular file of the model (symlinks are not followed), in name order."""
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    )
    base = path.parent if path.is_file() else path
    return [
        FileDigest(
            path=shown(f.relative_to(base)), size_bytes=f.stat().st_size, sha256=sha256_file(f)
        )
        for f in files
    ]


def root_digest(digests: list[FileDigest]) -> str:
    """The root digest OpenSSF model signing signs: sha256 over the per-file sha256 digests,
    ordered by path components ('a/b' before 'a-c'), for a single file too (so a file's root
    digest is the sha256 of its sha256, not its sha256)."""
    h = hashlib.sha256()
    for d in sorted(digests, key=lambda d: PurePosixPath(d.path).parts):
        h.update(bytes.fromhex(d.sha256))
    return h.hexdigest()


def anomalies(path: Path) -> list[str]:
    """What a model directory should not hold, or should hold only with a reason."""
    from runner.worker.shared.formats import CONFIG_SUFFIXES, FormatError, detect

    if not path.is_dir():
        return []
    out = []
    for p in sorted(path.rglob("*")):
        rel = Path(shown(p.relative_to(path)))
        if ".git" in rel.parts:
            out.append(f"{rel}: git content")
        elif p.is_symlink():
            out.append(f"{rel}: a symlink to {shown(p.readlink())[:200]}")
        elif p.is_dir():
            continue
        elif p.stat().st_size == 0:
            out.append(f"{rel}: an empty file")
        elif p.stat().st_mode & 0o111:
            out.append(f"{rel}: executable")
        elif p.suffix == ".py":
            out.append(f"{rel}: Python code")
        elif p.suffix.lower() not in CONFIG_SUFFIXES:
            try:
                detect(p)
            except (FormatError, OSError):
                out.append(f"{rel}: an unknown file")
    return out[:100]
