"""The sandbox image: its content-derived tag, its status, and its offline build.

The tag is a digest of everything that goes into the image (Dockerfile, entrypoint, lock file,
worker source, base recipe), so an image built from older sources is detected as stale.

The sources live in sandbox_images/ at the top of the checkout; a wheel carries a copy of them
in runner/controller/image_sources/ (setup.py puts it there), which is read when present. Both
hash alike, so a wheel built from a checkout finds the checkout's image current.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from runner.controller import engine as _docker
from runner.errors import ImageError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGED_DIR = Path(__file__).resolve().parent / "image_sources"
IMAGES_DIR = (
    PACKAGED_DIR if (PACKAGED_DIR / "Dockerfile").is_file() else REPO_ROOT / "sandbox_images"
)
WORKER_DIR = Path(__file__).resolve().parents[1] / "worker"
REPOSITORY = "airlock-sandbox"
BASE_REPOSITORY = "airlock-base"
PULL_BASE = "python:3.11-slim-bookworm"
BUILD_HINT = "build it with 'airlock image build' (or 'make image')"

PLATFORM_FLAGS = [
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--only-binary=:all:",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux_2_27_x86_64",
    "--platform",
    "manylinux_2_24_x86_64",
    "--platform",
    "manylinux_2_5_x86_64",
    "--platform",
    "manylinux1_x86_64",
    "--platform",
    "linux_x86_64",
    "--platform",
    "any",
]


class ImageState(StrEnum):
    CURRENT = "current"
    STALE = "stale"
    MISSING = "missing"


@dataclass(frozen=True)
class ImageStatus:
    state: ImageState
    tag: str
    image_id: str | None
    other_tags: list[str]
    size_bytes: int | None = None
    hint: str = BUILD_HINT

    def describe(self) -> str:
        if self.state is ImageState.CURRENT:
            size = f", {human_size(self.size_bytes)}" if self.size_bytes else ""
            return f"{self.tag} is current ({(self.image_id or '')[:19]}{size})"
        if self.state is ImageState.STALE:
            return (
                f"{self.tag} is not built; found older {', '.join(self.other_tags)}: "
                f"the sandbox sources changed since; {self.hint}"
            )
        return f"{self.tag} is not built; {self.hint}"


def human_size(n: int | None) -> str:
    """Bytes as docker image ls shows them (decimal units)."""
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    value, unit = n / 1000, "kB"
    for bigger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.2f} {unit}" if unit == "GB" else f"{value:.1f} {unit}"


def _worker_files() -> list[Path]:
    return sorted(
        p
        for p in WORKER_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def base_tag() -> str:
    digest = hashlib.sha256((IMAGES_DIR / "bootstrap-base.sh").read_bytes()).hexdigest()
    return f"{BASE_REPOSITORY}:bookworm-{digest[:12]}"


def content_digest() -> str:
    h = hashlib.sha256()
    for name in ("Dockerfile", "entrypoint.sh", "requirements.lock", "bootstrap-base.sh"):
        h.update(name.encode() + b"\0" + (IMAGES_DIR / name).read_bytes() + b"\0")
    for p in _worker_files():
        h.update(str(p.relative_to(WORKER_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def current_tag() -> str:
    return f"{REPOSITORY}:{content_digest()[:16]}"


def status() -> ImageStatus:
    tag = current_tag()
    found = _docker.image_id(tag)
    others = [t for t in _docker.image_tags(REPOSITORY) if t != tag]
    if found:
        return ImageStatus(ImageState.CURRENT, tag, found, others, _docker.image_size(tag))
    return ImageStatus(ImageState.STALE if others else ImageState.MISSING, tag, None, others)


def require_current() -> tuple[str, str]:
    """The current image's (tag, id), or an ImageError naming the command that builds it."""
    st = status()
    if st.state is not ImageState.CURRENT or st.image_id is None:
        what = "stale" if st.state is ImageState.STALE else "missing"
        raise ImageError(f"the sandbox image {st.tag} is {what}", BUILD_HINT)
    return st.tag, st.image_id


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airlock"


def gather_wheels(log: Callable[[str], None], lock: Path | None = None) -> Path:
    """Download the locked wheels (the default image's lock unless told) on the host (the host
    trusts the registry's CA; containers do not), checking every hash. Cached between builds."""
    wheelhouse = _cache_dir() / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    lock = lock or IMAGES_DIR / "requirements.lock"
    log(f"gathering wheels from {lock.name} into {wheelhouse}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--require-hashes",
        "--disable-pip-version-check",
        *PLATFORM_FLAGS,
        "-d",
        str(wheelhouse),
        "-r",
        str(lock),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise ImageError(
            f"downloading the locked wheels failed: {tail}",
            "check that the package registry is reachable from the host",
        )
    return wheelhouse


def ensure_base(log: Callable[[str], None]) -> str:
    """The base image: pulled when a registry answers, else bootstrapped offline."""
    tag = base_tag()
    if _docker.image_id(tag):
        return tag
    log(f"pulling {PULL_BASE}")
    if _docker.pull(PULL_BASE):
        _build_pulled_base(tag, log)
        return tag
    log("no registry answered; bootstrapping the base offline (debootstrap + docker import)")
    script = IMAGES_DIR / "bootstrap-base.sh"
    result = subprocess.run(["bash", str(script), tag], check=False)
    if result.returncode != 0 or not _docker.image_id(tag):
        raise ImageError(
            "bootstrapping the base image failed",
            "run as root with debootstrap installed ('make engine' installs it)",
        )
    return tag


def _build_pulled_base(tag: str, log: Callable[[str], None]) -> None:
    """python:3.11-slim-bookworm lacks strace: add it from .deb files fetched on the host."""
    with tempfile.TemporaryDirectory(prefix="airlock-base-") as ctx:
        debs = Path(ctx) / "debs"
        debs.mkdir()
        got = subprocess.run(
            ["apt-get", "download", "strace", "libunwind8"],
            cwd=debs,
            capture_output=True,
            text=True,
            check=False,
        )
        if got.returncode != 0:
            raise ImageError(
                "fetching strace for the pulled base failed: " + got.stderr.strip()[-200:]
            )
        (Path(ctx) / "Dockerfile").write_text(
            f"FROM {PULL_BASE}\nCOPY debs /debs\nRUN dpkg -i /debs/*.deb && rm -rf /debs\n"
        )
        _docker.build(Path(ctx), tag, {}, log)


def build(log: Callable[[str], None], force: bool = False) -> str:
    """Build the current image (offline) and return its id."""
    tag = current_tag()
    existing = _docker.image_id(tag)
    if existing and not force:
        log(f"{tag} is already current")
        return existing
    if not (IMAGES_DIR / "Dockerfile").exists():
        raise UsageError(
            f"{IMAGES_DIR} has no Dockerfile",
            "run from an Airlock checkout, or install a wheel built from one",
        )
    base = ensure_base(log)
    wheelhouse = gather_wheels(log)
    with tempfile.TemporaryDirectory(prefix="airlock-build-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(IMAGES_DIR / "Dockerfile", ctx / "Dockerfile")
        shutil.copy2(IMAGES_DIR / "entrypoint.sh", ctx / "entrypoint.sh")
        link_wheels(IMAGES_DIR / "requirements.lock", wheelhouse, ctx / "wheelhouse")
        shutil.copytree(
            WORKER_DIR, ctx / "worker", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        log(f"building {tag} from {base} (no network)")
        image = _docker.build(ctx, tag, {"BASE": base}, log)
    log(f"built {tag} ({image[:19]})")
    return image


def link_wheels(lock: Path, wheelhouse: Path, dest: Path) -> None:
    """Put the wheels the lock names, and the lock, in a build context's directory."""
    dest.mkdir()
    for src in _locked_files(lock, wheelhouse):
        try:
            os.link(src, dest / src.name)
        except OSError:
            shutil.copy2(src, dest / src.name)
    shutil.copy2(lock, dest / "requirements.lock")


def _locked_files(lock: Path, wheelhouse: Path) -> list[Path]:
    """The wheel files in the wheelhouse that the lock names (and only those)."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec = line.split()[0]
        name, _, version = spec.partition("==")
        pins[name.lower().replace("_", "-")] = version
    files = []
    for whl in sorted(wheelhouse.glob("*.whl")):
        parts = whl.name.split("-")
        name, version = parts[0].lower().replace("_", "-"), parts[1]
        if pins.get(name) == version:
            files.append(whl)
    missing = set(pins) - {f.name.split("-")[0].lower().replace("_", "-") for f in files}
    if missing:
        raise ImageError(
            f"the wheelhouse lacks {', '.join(sorted(missing))}",
            "delete ~/.cache/airlock/wheelhouse and build again",
        )
    return files
