"""Discovery: which files and directories a batch evaluates, and each model's digest.

Paths are model files, directories of models (recognised by content; files that merely claim
to be models by magic bytes or name are kept too, and their result says why they failed), and
text files listing paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runner.errors import UsageError
from runner.report import file_digests, root_digest
from runner.worker.shared.formats import CONFIG_SUFFIXES, FormatError, detect

CONFIG_NAMES = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "model_index.json",
}


def _is_model_dir(d: Path) -> bool:
    names = {p.name for p in d.iterdir()}
    return bool(names & CONFIG_NAMES)


MODEL_SUFFIXES = {
    ".onnx",
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".safetensors",
    ".pkl",
    ".pickle",
    ".joblib",
    ".torchscript",
    ".ptl",
}


def _is_model_file(p: Path) -> bool:
    """A model by content, or a file that claims to be one (by magic bytes or name) but is
    damaged: it is evaluated, and its result says why it failed."""
    try:
        detect(p)
        return True
    except FormatError:
        pass
    except OSError:
        return False
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head.startswith((b"PK\x03\x04", b"\x80")) or p.suffix.lower() in MODEL_SUFFIXES


def _looks_like_list(p: Path) -> bool:
    if p.suffix.lower() not in (".txt", ".lst", ".list", "") or p.stat().st_size > 1 << 20:
        return False
    try:
        text = p.read_text()
    except (UnicodeDecodeError, OSError):
        return False
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return bool(lines) and all("\0" not in ln for ln in lines)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Models named by PATHs: files, directories (every model file or model directory inside,
    recognised by content) and text files listing paths, one a line."""
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            found.append(p)

    def walk(d: Path) -> None:
        if _is_model_dir(d):
            add(d)
            return
        for child in sorted(d.iterdir()):
            if child.name.startswith(".") or child.is_symlink():
                continue
            if child.is_dir():
                walk(child)
            elif child.suffix.lower() not in CONFIG_SUFFIXES and _is_model_file(child):
                add(child)

    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory", "check the paths given to eval")
        if p.is_dir():
            walk(p)
        elif _is_model_file(p):
            add(p)
        elif _looks_like_list(p):
            base = p.parent
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    target = Path(line).expanduser()
                    for q in expand([target if target.is_absolute() else base / target]):
                        add(q)
        else:
            add(p)  # not recognisable: its evaluation reports why
    return found


def digest(path: Path) -> str:
    """sha256 of a file; for a directory, its root digest (over the per-file digests)."""
    digests = file_digests(path)
    return digests[0].sha256 if path.is_file() else root_digest(digests)


# --- one model ---------------------------------------------------------------------------------
