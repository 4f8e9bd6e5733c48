"""The one module that talks to the Docker SDK.

docker-py's calls take free-form keyword arguments and return different types depending on
flags; here they are wrapped in a few typed functions, and `docker.errors.*` is translated into
Airlock's errors at this boundary (keeping the cause).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount, Ulimit

from runner.errors import EngineError, ImageError

SESSION_LABEL = "airlock.session"
OWNER_PID_LABEL = "airlock.owner-pid"
OWNER_HOST_LABEL = "airlock.owner-host"
TMPDIR_LABEL = "airlock.tmpdir"

log = logging.getLogger(__name__)

ENGINE_HINT = "start it with 'make engine' (or 'sudo make engine'), then check 'airlock doctor'"


@cache
def client() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineError("the Docker engine is not reachable", ENGINE_HINT) from e
    return c


@contextlib.contextmanager
def _engine_call(what: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.ImageNotFound as e:
        raise ImageError(f"{what}: image not found", "build it with 'airlock image build'") from e
    except docker.errors.APIError as e:
        raise EngineError(f"{what}: the Docker engine refused: {e.explanation or e}") from e
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineError(f"{what}: the Docker engine is not reachable", ENGINE_HINT) from e


@dataclass(frozen=True)
class BindMount:
    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    name: str
    command: list[str]
    labels: dict[str, str]
    runtime: str
    mounts: list[BindMount]
    environment: dict[str, str]
    memory_bytes: int
    nano_cpus: int
    pids: int
    open_files: int
    tmpfs: dict[str, str]
    seccomp_json: str
    cap_add: list[str] = field(default_factory=list)
    user: str = "0:0"
    entrypoint: list[str] | None = None  # the image's own when None
    pid_mode: str | None = None  # "host" for the zygote only (runner.controller.zygote)


@dataclass(frozen=True)
class ContainerState:
    status: str  # created, running, exited, dead, ...
    running: bool
    exit_code: int | None
    oom_killed: bool
    error: str
    log_path: str = ""  # the engine's json-file log


def create_and_start(spec: ContainerSpec) -> str:
    """Create and start a sealed container; returns its id."""
    mounts = [
        Mount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
        for m in spec.mounts
    ]
    with _engine_call("starting the sandbox"):
        container = client().containers.create(
            image=spec.image,
            command=spec.command,
            entrypoint=spec.entrypoint,
            pid_mode=spec.pid_mode,
            name=spec.name,
            labels=spec.labels,
            runtime=spec.runtime,
            network_mode="none",
            ipc_mode="private",
            read_only=True,
            user=spec.user,
            cap_drop=["ALL"],
            cap_add=spec.cap_add or None,
            security_opt=["no-new-privileges:true", f"seccomp={spec.seccomp_json}"],
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids,
            ulimits=[
                Ulimit(name="nofile", soft=spec.open_files, hard=spec.open_files),
                Ulimit(name="core", soft=0, hard=0),
            ],
            tmpfs=spec.tmpfs,
            mounts=mounts,
            environment=spec.environment,
            hostname="sandbox",
            dns=["127.0.0.1"],  # lookups go to a closed loopback port, never the host's resolver
            # at most 2 MiB of the model's output on the host's disk; a rotation means a flood
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "2"}),
            detach=True,
        )
        try:
            container.start()
        except BaseException:
            try:
                container.remove(force=True)
            except docker.errors.DockerException as e:
                log.debug("removing the container that did not start: %s", e)
            raise
        return str(container.id)


def state(container_id: str) -> ContainerState | None:
    """The container's state, or None when it no longer exists."""
    try:
        info = client().api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineError(
            "inspecting the sandbox: the Docker engine is not reachable", ENGINE_HINT
        ) from e
    st = info.get("State", {})
    running = bool(st.get("Running"))
    return ContainerState(
        status=str(st.get("Status", "")),
        running=running,
        exit_code=None if running else int(st.get("ExitCode", 0)),
        oom_killed=bool(st.get("OOMKilled")),
        error=str(st.get("Error", "")),
        log_path=str(info.get("LogPath") or ""),
    )


def host_pid(container_id: str) -> int | None:
    """The host pid of the container's first process (0 or None when it is not running)."""
    try:
        pid = int(client().api.inspect_container(container_id)["State"].get("Pid") or 0)
    except (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        KeyError,
        ValueError,
    ) as e:
        log.debug("the host pid of %s: %r", container_id[:12], e)
        return None
    return pid or None


def pid_in_container(pid: int, container_id: str) -> bool:
    """Whether a host pid runs in this container's cgroup (the worker under runc, the gVisor
    sandbox process under runsc)."""
    try:
        return container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def log_rotated(state: ContainerState) -> bool:
    """Whether the json-file log rotated, i.e. the container wrote more than its max-size."""
    return bool(state.log_path) and Path(state.log_path + ".1").exists()


def wait(container_id: str, timeout_s: float) -> ContainerState | None:
    """Wait up to timeout_s for the container to exit."""
    try:
        client().api.wait(container_id, timeout=timeout_s)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        log.debug("waiting for %s: %r", container_id[:12], e)
    return state(container_id)


def kill(container_id: str) -> None:
    try:
        client().api.kill(container_id)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        log.debug("killing %s: %r", container_id[:12], e)


def logs_tail(container_id: str, lines: int = 20, max_bytes: int = 8192) -> str:
    try:
        raw = client().api.logs(container_id, stdout=True, stderr=True, tail=lines)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        log.debug("the log of %s: %r", container_id[:12], e)
        return ""
    data = raw if isinstance(raw, bytes) else b"".join(raw)
    return data[-max_bytes:].decode("utf-8", "replace")


def remove(container_id: str) -> None:
    """Remove the container (killing it if needed). Idempotent."""
    try:
        client().api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as e:
        if "already in progress" in str(e):
            return
        raise EngineError(f"removing sandbox {container_id[:12]}: {e.explanation or e}") from e
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineError(
            "removing the sandbox: the Docker engine is not reachable", ENGINE_HINT
        ) from e


@dataclass(frozen=True)
class LabelledContainer:
    id: str
    name: str
    labels: dict[str, str]
    status: str


def list_sessions() -> list[LabelledContainer]:
    """Every container (running or not) that carries the Airlock session label."""
    with _engine_call("listing sandboxes"):
        found = client().api.containers(all=True, filters={"label": SESSION_LABEL})
    return [
        LabelledContainer(
            id=c["Id"],
            name=(c.get("Names") or ["?"])[0].lstrip("/"),
            labels=c.get("Labels") or {},
            status=c.get("State", ""),
        )
        for c in found
    ]


def stats_once(container_id: str) -> dict[str, Any] | None:
    try:
        return dict(client().api.stats(container_id, stream=False))
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        log.debug("the stats of %s: %r", container_id[:12], e)
        return None


# --- images ---------------------------------------------------------------------------------


def image_id(tag: str) -> str | None:
    try:
        return str(client().api.inspect_image(tag)["Id"])
    except docker.errors.ImageNotFound:
        return None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise EngineError(
            "inspecting the image: the Docker engine is not reachable", ENGINE_HINT
        ) from e


def image_tags(repository: str) -> list[str]:
    with _engine_call("listing images"):
        images = client().api.images(name=repository)
    return sorted(t for img in images for t in (img.get("RepoTags") or []))


def image_size(tag: str) -> int | None:
    """The image's size in bytes (its layers and its parents'), or None when it is absent."""
    with _engine_call("inspecting the image"):
        try:
            return int(client().api.inspect_image(tag).get("Size") or 0)
        except docker.errors.ImageNotFound:
            return None


def remove_image(tag: str) -> bool:
    """Untag (and, when nothing else holds them, delete) an image; False when the engine
    refuses (a container still uses it) or it is already gone."""
    try:
        client().api.remove_image(tag)
    except docker.errors.APIError as e:
        log.debug("removing the image %s: %s", tag, e)
        return False
    return True


def pull(reference: str) -> bool:
    """Try to pull an image; False when no registry answers."""
    try:
        client().api.pull(reference)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        log.debug("pulling %s: %r", reference, e)
        return False
    return image_id(reference) is not None


def tag(source: str, repository: str, tag_name: str) -> None:
    with _engine_call("tagging the image"):
        client().api.tag(source, repository, tag_name)


def build(
    context_dir: Path, tag_name: str, buildargs: dict[str, str], on_line: Callable[[str], None]
) -> str:
    """Build with no network; stream the builder's output lines to on_line; return the id."""
    with _engine_call("building the sandbox image"):
        stream = client().api.build(
            path=str(context_dir),
            tag=tag_name,
            buildargs=buildargs,
            network_mode="none",
            rm=True,
            forcerm=True,
            decode=True,
            pull=False,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageError(
                    f"the image build failed: {str(detail).strip()}", "see the build output above"
                )
            text = chunk.get("stream")
            if text and text.strip():
                on_line(text.rstrip())
    found = image_id(tag_name)
    if found is None:
        raise ImageError("the image build finished but produced no image")
    return found


def engine_info() -> dict[str, Any]:
    with _engine_call("asking the engine"):
        return dict(client().info())


def seccomp_json(path: Path) -> str:
    """A seccomp profile as the compact JSON string the engine API expects."""
    return json.dumps(json.loads(path.read_text()), separators=(",", ":"))
