"""Resource telemetry, sampled from the host: the container's cgroup, read directly.

Reading cgroup files costs microseconds, so the sampler runs at 10 Hz (Docker's stats API
needs a second per sample). cgroup v1 (this machine's engine) and v2 are both read; where no
cgroup is found the samples are empty and the report says so.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from runner.telemetry.events import Phase, PhaseClock

CGROUP_ROOT = Path("/sys/fs/cgroup")
INTERVAL_S = 0.1


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: float
    phase: Phase
    cpu_seconds: float
    memory_bytes: int
    pids: int
    io_read_bytes: int
    io_write_bytes: int


class PhaseResources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Phase
    seconds: float
    cpu_seconds: float
    memory_peak_bytes: int
    pids_max: int
    io_read_bytes: int
    io_write_bytes: int


class Resources(BaseModel):
    """What the host measured. None means it could not be measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(default="host", description="always the host: cgroup and Docker accounting")
    sample_interval_s: float = INTERVAL_S
    memory_limit_bytes: int
    memory_peak_bytes: int | None
    cpu_seconds: float | None
    pids_limit: int
    pids_max: int | None
    pids_limit_hit: bool
    oom_killed: bool
    exit_code: int | None
    killed_by_host: bool = Field(description="Airlock had to kill the container")
    timed_out: str = Field(default="", description="which deadline passed, if any")
    per_phase: list[PhaseResources]
    timeline: list[Sample]


@dataclass
class _Paths:
    cpu: Path | None = None
    cpu_v2: bool = False
    memory: Path | None = None
    memory_peak: Path | None = None
    pids: Path | None = None
    pids_events: Path | None = None
    io: Path | None = None
    io_v2: bool = False


def _find(container_id: str) -> _Paths:
    p = _Paths()
    v1 = CGROUP_ROOT / "memory" / "docker" / container_id
    if v1.exists():

        def base(controller: str) -> Path:
            return CGROUP_ROOT / controller / "docker" / container_id

        p.cpu = base("cpuacct") / "cpuacct.usage"
        p.memory = v1 / "memory.usage_in_bytes"
        p.memory_peak = v1 / "memory.max_usage_in_bytes"
        p.pids = base("pids") / "pids.current"
        p.pids_events = base("pids") / "pids.events"
        p.io = base("blkio") / "blkio.throttle.io_service_bytes"
        return p
    for cand in (
        CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope",
        CGROUP_ROOT / "docker" / container_id,
    ):
        if cand.exists():
            p.cpu, p.cpu_v2 = cand / "cpu.stat", True
            p.memory = cand / "memory.current"
            p.memory_peak = cand / "memory.peak"
            p.pids, p.pids_events = cand / "pids.current", cand / "pids.events"
            p.io, p.io_v2 = cand / "io.stat", True
            return p
    return p


def oom_kills(container_id: str) -> int:
    """How many processes the kernel killed in the container's memory cgroup for its limit (a
    warm sandbox's worker is not the container's first process, whose death the engine's own
    OOMKilled flag follows)."""
    p = _find(container_id)
    if p.memory is None:
        return 0
    name = "memory.events" if p.memory.name == "memory.current" else "memory.oom_control"
    try:
        lines = (p.memory.parent / name).read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isascii() and value.strip().isdigit():
            return int(value)
    return 0


def _read_int(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_seconds(p: _Paths) -> float | None:
    if p.cpu is None:
        return None
    try:
        text = p.cpu.read_text()
    except OSError:
        return None
    if p.cpu_v2:
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
        return None
    return int(text.split()[0]) / 1e9


def _io(p: _Paths) -> tuple[int, int]:
    if p.io is None:
        return 0, 0
    try:
        text = p.io.read_text()
    except OSError:
        return 0, 0
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if p.io_v2:
            for kv in parts[1:]:
                k, _, v = kv.partition("=")
                if k == "rbytes":
                    read += int(v)
                elif k == "wbytes":
                    write += int(v)
        elif len(parts) == 3 and parts[1] in ("Read", "Write"):
            if parts[1] == "Read":
                read += int(parts[2])
            else:
                write += int(parts[2])
    return read, write


def _pids_limit_hits(p: _Paths) -> int:
    if p.pids_events is None:
        return 0
    try:
        for line in p.pids_events.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == "max":
                return int(v)
    except (OSError, ValueError):
        return 0
    return 0


@dataclass
class Sampler:
    """Samples a container's cgroup on a background thread until stopped."""

    container_id: str
    clock_marks: list[tuple[float, Phase]]
    samples: list[Sample] = field(default_factory=list)
    _paths: _Paths = field(default_factory=_Paths)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    memory_peak_bytes: int | None = None
    pids_limit_hits: int = 0
    max_samples: int = 20_000
    scratch_dir: Path | None = None  # the container's /tmp, seen through /proc/PID/root
    scratch_used_max: float = 0.0  # fraction of the tmpfs in use, at most

    def start(self, host_pid: int | None = None) -> None:
        self._paths = _find(self.container_id)
        if host_pid:
            candidate = Path(f"/proc/{host_pid}/root/tmp")
            if candidate.exists():
                self.scratch_dir = candidate
        self._thread = threading.Thread(target=self._run, name="airlock-sampler", daemon=True)
        self._thread.start()

    def _clock(self) -> PhaseClock:
        return PhaseClock(tuple(self.clock_marks))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(INTERVAL_S)

    def sample_once(self) -> None:
        p = self._paths
        mem = _read_int(p.memory)
        cpu = _cpu_seconds(p)
        if mem is None and cpu is None:
            return
        peak = _read_int(p.memory_peak)
        if peak is not None:
            self.memory_peak_bytes = max(self.memory_peak_bytes or 0, peak)
        self.pids_limit_hits = max(self.pids_limit_hits, _pids_limit_hits(p))
        if self.scratch_dir is not None:
            try:
                st = os.statvfs(self.scratch_dir)
                if st.f_blocks:
                    used = 1 - st.f_bfree / st.f_blocks
                    self.scratch_used_max = max(self.scratch_used_max, used)
            except OSError:
                self.scratch_dir = None
        read, write = _io(p)
        now = time.time()
        if len(self.samples) < self.max_samples:
            self.samples.append(
                Sample(
                    time=now,
                    phase=self._clock().at(now),
                    cpu_seconds=cpu or 0.0,
                    memory_bytes=mem or 0,
                    pids=_read_int(p.pids) or 0,
                    io_read_bytes=read,
                    io_write_bytes=write,
                )
            )

    def stop(self) -> None:
        """Take a last sample (the cgroup still exists until the container is removed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sample_once()


def summarise(samples: list[Sample]) -> list[PhaseResources]:
    out = []
    prev: Sample | None = None
    by_phase: dict[Phase, list[tuple[Sample | None, Sample]]] = {}
    for s in samples:
        by_phase.setdefault(s.phase, []).append((prev, s))
        prev = s
    for phase in Phase:
        pairs = by_phase.get(phase)
        if not pairs:
            continue
        first_prev, first = pairs[0]
        start = first_prev or first
        last = pairs[-1][1]
        out.append(
            PhaseResources(
                phase=phase,
                seconds=round(last.time - start.time, 3),
                cpu_seconds=round(max(0.0, last.cpu_seconds - start.cpu_seconds), 4),
                memory_peak_bytes=max(s.memory_bytes for _, s in pairs),
                pids_max=max(s.pids for _, s in pairs),
                io_read_bytes=max(0, last.io_read_bytes - start.io_read_bytes),
                io_write_bytes=max(0, last.io_write_bytes - start.io_write_bytes),
            )
        )
    return out
