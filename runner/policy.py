"""The sandbox policy: limits and switches for one sandbox.

Defaults are the sealed sandbox of DESIGN.md. Every field is validated; a policy that loosens a
default is allowed, and the report carries the whole policy, so the loosening shows.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MIB = 1 << 20
GIB = 1 << 30


class Runtime(StrEnum):
    RUNC = "runc"
    RUNSC = "runsc"


class Deadline(StrEnum):
    """Which of the policy's time limits passed."""

    STARTUP = "startup"  # startup_timeout_s
    LOAD = "load"  # load_timeout_s
    CALL = "call"  # call_timeout_s, per inference call
    WALL = "wall"  # wall_timeout_s, the whole life of the sandbox


class Policy(BaseModel):
    """Limits for one sandbox. Units are in the names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: Runtime = Runtime.RUNC
    memory_bytes: int = Field(default=2 * GIB, ge=64 * MIB, description="memory limit, no swap")
    cpus: float = Field(default=1.0, gt=0, le=64)
    pids: int | None = Field(
        default=None, ge=16, description="pids limit; None picks one per runtime"
    )
    open_files: int = Field(default=1024, ge=64)
    tmpfs_bytes: int = Field(default=64 * MIB, ge=MIB, description="size of the /tmp scratch tmpfs")
    startup_timeout_s: float = Field(default=60.0, gt=0)
    load_timeout_s: float = Field(default=120.0, gt=0)
    call_timeout_s: float = Field(default=60.0, gt=0)
    wall_timeout_s: float = Field(default=900.0, gt=0, description="total life of the sandbox")
    max_reply_bytes: int = Field(default=64 * MIB, ge=MIB, le=1 * GIB)
    max_request_bytes: int = Field(default=256 * MIB, ge=MIB, le=2 * GIB)
    shm_bytes: int = Field(
        default=256 * MIB,
        ge=0,
        le=16 * GIB,
        description="shared memory for large tensors, a sealed memfd the "
        "host passes to the worker (0: none; every tensor goes inline)",
    )
    trace: bool = Field(default=True, description="run the worker under strace")

    @property
    def effective_pids(self) -> int:
        """gVisor's own threads count against the limit (about 38 idle), so runsc gets more."""
        if self.pids is not None:
            return self.pids
        return 256 if self.runtime is Runtime.RUNSC else 128

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))
