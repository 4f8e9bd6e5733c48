"""Framework images: a heavy framework (TensorFlow) in an image of its own, layered on the
default sandbox image and built on demand, offline, the first time a model needs it.

Which format needs which image is one table, runner.worker.shared.images.FORMAT_FRAMEWORKS.
A framework image's sources are sandbox_images/<framework>/ (a Dockerfile and a lock of the
wheels the default lock lacks, hashed); its tag is `airlock-sandbox-<framework>:<digest>`, the
digest of the default image's digest and those sources, so it is stale whenever either changes.

A model that needs a missing framework image gets it built before its sandbox starts, with a
progress line and how long it takes, unless AIRLOCK_AUTO_BUILD=0 (then a UsageError names the
command that builds it). Builds of one image never race: they take a lock file, and a build
that waited finds the image built. A build that failed is not tried again by the same process
(a batch's next model does not wait for it again); `airlock image build --with X` tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.controller import engine as _docker
from runner.controller import images
from runner.errors import AirlockError, UsageError
from runner.worker.shared import images as table
from runner.worker.shared.formats import FormatError, detect

log = logging.getLogger(__name__)

AUTO_BUILD_ENV = "AIRLOCK_AUTO_BUILD"
# what a build takes on 2 cores, wheels downloaded (measured: see the README): the first one,
# and one on a new default image (the framework's own stage cached from an earlier build)
BUILD_ESTIMATE = {"tensorflow": ("2 to 4 minutes", "about a minute")}

Log = Callable[[str], None]


@dataclass(frozen=True)
class Sources:
    """A framework image's build sources."""

    framework: str
    directory: Path

    @property
    def dockerfile(self) -> Path:
        return self.directory / "Dockerfile"

    @property
    def lock(self) -> Path:
        return self.directory / "requirements.lock"


def known(framework: str) -> str:
    """The framework's name, checked against the table (a UsageError for another)."""
    if framework not in table.FRAMEWORKS:
        raise UsageError(
            f"no framework image named {framework!r}",
            f"use one of: {', '.join(sorted(table.FRAMEWORKS))}",
        )
    return framework


def sources(framework: str) -> Sources:
    return Sources(known(framework), images.IMAGES_DIR / framework)


def repository(framework: str) -> str:
    return f"{images.REPOSITORY}-{framework}"


def hint(framework: str) -> str:
    return f"build it with '{table.build_command(framework)}'"


def content_digest(framework: str, default_digest: str | None = None) -> str:
    """The default image's digest, then the framework's Dockerfile and lock."""
    src = sources(framework)
    h = hashlib.sha256()
    h.update(b"default\0" + (default_digest or images.content_digest()).encode() + b"\0")
    for p in (src.dockerfile, src.lock):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def current_tag(framework: str, default_digest: str | None = None) -> str:
    return f"{repository(framework)}:{content_digest(framework, default_digest)[:16]}"


def status(framework: str) -> images.ImageStatus:
    tag = current_tag(framework)
    found = _docker.image_id(tag)
    others = [t for t in _docker.image_tags(repository(framework)) if t != tag]
    size = _docker.image_size(tag) if found else None
    if found:
        state = images.ImageState.CURRENT
    else:
        state = images.ImageState.STALE if others else images.ImageState.MISSING
    return images.ImageStatus(state, tag, found, others, size, hint(framework))


def statuses() -> dict[str, images.ImageStatus]:
    """Every image: the default one first, then each framework's."""
    found = {table.DEFAULT: images.status()}
    for framework in sorted(table.FRAMEWORKS):
        found[framework] = status(framework)
    return found


# --- which image a model gets -----------------------------------------------------------------


def auto_build() -> bool:
    """Whether a missing framework image is built when a model needs it (AIRLOCK_AUTO_BUILD)."""
    return os.environ.get(AUTO_BUILD_ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def needed(formats: Iterable[str]) -> list[str]:
    """The framework images these formats need, each once, in order."""
    return list(dict.fromkeys(fw for f in formats if (fw := table.framework_for(f))))


def image_for(
    fmt: str, pooled: tuple[str, str] | None = None, notes: list[str] | None = None
) -> tuple[str, str]:
    """The (tag, id) of the image a model of this format runs in: the default image, or the
    framework image it needs (built now when missing and allowed; a note says so). A pooled
    sandbox's image is checked instead: a model it cannot load is refused before its bytes
    reach it."""
    framework = table.framework_for(fmt)
    if pooled is not None:
        if framework and not pooled[0].startswith(f"{repository(framework)}:"):
            raise UsageError(
                f"{table.model_name(fmt)} needs the {framework} sandbox image, and this "
                f"pre-started sandbox runs {pooled[0]}",
                f"start the pool with formats=({fmt!r},), or open a runner.Sandbox for it",
            )
        return pooled
    if not framework:
        return images.require_current()
    start, missing = time.monotonic(), _docker.image_id(current_tag(framework)) is None
    tag, image = ensure(framework, fmt)
    waited = time.monotonic() - start
    if notes is not None and missing:
        notes.append(
            f"the {framework} sandbox image was built (or waited for) before this sandbox "
            f"started: {waited:.0f} s, counted in the preflight phase"
        )
    return tag, image


def image_for_formats(formats: Iterable[str]) -> tuple[str, str]:
    """The image for a sandbox pre-started for these formats (at most one framework)."""
    frameworks = needed(formats)
    if len(frameworks) > 1:
        raise UsageError(
            f"formats {', '.join(formats)} need different framework images "
            f"({', '.join(frameworks)})",
            "use one pool per framework",
        )
    return ensure(frameworks[0]) if frameworks else images.require_current()


def formats_of(paths: Iterable[Path]) -> list[str]:
    """The formats of these models by their content (bounded reads; a path that cannot be
    read is left to its own sandbox to say so)."""
    found = []
    for p in paths:
        try:
            found.append(detect(p).format.value)
        except (FormatError, OSError) as e:
            log.debug("detecting the format of %s: %r", p, e)
    return list(dict.fromkeys(found))


def prepare(formats: Iterable[str], log_line: Log | None = None) -> list[str]:
    """Build, once and before any sandbox starts, each missing framework image these formats
    need (a batch calls this). What could not be built is logged and left to each model's own
    start (which then fails fast with the same error); returns the frameworks now ready."""
    ready = []
    for framework in needed(formats):
        try:
            ensure(framework, log_line=log_line)
            ready.append(framework)
        except AirlockError as e:
            log.warning("the %s sandbox image: %s", framework, e.diagnostics())
    return ready


_failed: dict[str, AirlockError] = {}  # tag -> why its build failed, in this process
_in_process = threading.Lock()


def ensure(framework: str, fmt: str = "", log_line: Log | None = None) -> tuple[str, str]:
    """The framework image's (tag, id): current, or built now (under the build lock). The
    default image must be current already: an on-demand build never rebuilds it."""
    tag = current_tag(framework)
    found = _docker.image_id(tag)
    if found:
        return tag, found
    if tag in _failed:
        raise _failed[tag]
    if not auto_build():
        who = table.model_name(fmt) if fmt else "the model"
        raise UsageError(
            f"{who} needs the {framework} sandbox image, which is not built ({AUTO_BUILD_ENV}=0)",
            hint(framework),
        )
    images.require_current()
    say = log_line or _warn
    first = (
        f"{table.model_name(fmt) if fmt else 'a model'} needs the {framework} sandbox image: "
        f"building it once, offline ({estimate(framework)}; "
        f"'{table.build_command(framework)}' builds it ahead of time)"
    )
    return tag, build_locked(framework, say, first=first)


def estimate(framework: str) -> str:
    """How long a build of the framework image takes: less when one was built before."""
    first, again = BUILD_ESTIMATE.get(framework, ("some minutes", "some minutes"))
    return again if _docker.image_tags(repository(framework)) else first


def build_locked(framework: str, say: Log, force: bool = False, first: str = "") -> str:
    """Build the framework image under its build lock (a build that waited for another one
    finds the image built) and return its id; `first` is said once a build does start."""
    tag = current_tag(framework)
    with build_lock(framework, say):
        found = _docker.image_id(tag)
        if found and not force:
            say(f"{tag} is already current")
            return found
        if first:
            say(first)
        try:
            return build(framework, say)
        except AirlockError as e:
            _failed[tag] = e
            raise


def _warn(line: str) -> None:
    log.warning("%s", line, extra={"progress": True})  # the CLI prints it as a plain line


@contextlib.contextmanager
def build_lock(framework: str, say: Log) -> Iterator[None]:
    """One build of a framework image at a time, across processes (a lock file in the cache
    directory) and threads."""
    locks = images._cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with _in_process, open(locks / f"image-{framework}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()[:40]
            say(f"waiting for another build of the {framework} image ({holder or 'a process'})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- the build ----------------------------------------------------------------------------------


def build(framework: str, say: Log) -> str:
    """Build the framework image on the current default image (offline: the wheels are
    downloaded on the host first) and return its id. The caller holds the build lock
    (build_locked)."""
    src = sources(framework)
    default_tag, _ = images.require_current()
    tag = current_tag(framework)
    if not src.dockerfile.is_file() or not src.lock.is_file():
        raise UsageError(
            f"{src.directory} has no Dockerfile and requirements.lock",
            "run from an Airlock checkout, or install a wheel built from one",
        )
    start = time.monotonic()
    base = images.ensure_base(say)
    wheelhouse = images.gather_wheels(say, src.lock)
    say(f"wheels ready ({time.monotonic() - start:.0f} s)")
    with tempfile.TemporaryDirectory(prefix="airlock-build-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(src.dockerfile, ctx / "Dockerfile")
        images.link_wheels(src.lock, wheelhouse, ctx / "wheelhouse")
        say(f"building {tag} from {default_tag} (no network)")
        image = _docker.build(ctx, tag, {"BASE": base, "SANDBOX": default_tag}, _steps(say))
    say(f"built {tag} ({image[:19]}) in {time.monotonic() - start:.0f} s")
    _failed.pop(tag, None)
    return image


def _steps(say: Log) -> Log:
    """The builder's step lines go to `say`, with the time since the build started; the
    installer's own output only to the debug log."""
    start = time.monotonic()

    def on_line(line: str) -> None:
        if line.startswith("Step "):
            say(f"[{time.monotonic() - start:4.0f} s] {line[:160]}")
        else:
            log.debug("%s", line)

    return on_line


# --- housekeeping -------------------------------------------------------------------------------


def stale_tags() -> list[str]:
    """The framework images built from other sources than the current ones."""
    found = []
    for framework in sorted(table.FRAMEWORKS):
        current = current_tag(framework)
        found += [t for t in _docker.image_tags(repository(framework)) if t != current]
    return found


def remove_stale() -> list[str]:
    """Remove the stale framework images (those a container still uses stay); the removed."""
    return [t for t in stale_tags() if _docker.remove_image(t)]
