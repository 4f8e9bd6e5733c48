"""One traced syscall with what is known of its process, and the readers of its arguments.

Arguments are strace's text (`-xx`: every string hex-escaped), hostile data: every reader here
returns a value or None, never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.telemetry import paths
from runner.telemetry import strace as _strace
from runner.telemetry.events import DetailValue, Event, Phase, Source
from runner.telemetry.procstate import Fd, State

AIRLOCK_DIRS = ("/airlock/run", "/airlock/trace")
NSCD_SOCKETS = ("/run/nscd/socket", "/var/run/nscd/socket")

_SENSITIVE = re.compile(
    r"^(/etc/(shadow|gshadow|sudoers)|/proc/(\d+|self|thread-self)/(environ|mem)|/proc/kcore"
    r"|/(var/)?run/(docker|containerd)(\.sock|/)|/var/run/secrets/|/run/secrets/"
    r"|/root/|.*/\.ssh/|.*/\.aws/(credentials|config)|.*/\.config/gcloud/|.*/\.azure/"
    r"|.*/\.kube/config|.*/\.docker/config\.json|.*/\.netrc$|.*/\.git-credentials$"
    r"|.*/\.pypirc$|.*/\.npmrc$|.*/\.(cache/)?huggingface/token$|/etc/ssl/private/"
    r"|.*/id_(rsa|ecdsa|ed25519|dsa)$)"
)
_PROBE = re.compile(
    r"^(/\.dockerenv|/\.containerenv|/run/\.containerenv|/proc/(1|self|\d+)/(cgroup|mountinfo"
    r"|mounts|sched|status)|/proc/(mounts|self/mounts)|/sys/class/dmi/id/.*|/sys/hypervisor/.*"
    r"|/proc/scsi/.*|/proc/1/environ)$"
)
# Reads the libraries do on their own (baseline): never a finding.
_BASELINE_READS = re.compile(r"^/proc/self/status$")
_CUT = re.compile(r'"(?:\\x[0-9a-f]{2})*"\.\.\.$')


def is_sensitive(path: str) -> bool:
    return bool(_SENSITIVE.match(path))


def is_probe(path: str) -> bool:
    return bool(_PROBE.match(path))


def is_baseline_read(path: str) -> bool:
    return bool(_BASELINE_READS.match(path))


def in_airlock_dirs(path: str) -> bool:
    return any(paths.is_under(path, d) for d in AIRLOCK_DIRS)


def text(token: str) -> str:
    return _strace.decode_string(token)


def number(token: str) -> int | None:
    t = token.strip()
    if t.startswith("-"):
        return -n if (n := number(t[1:])) is not None else None
    return int(t) if t.isascii() and t.isdigit() and len(t) <= 20 else None


def array(token: str) -> list[str]:
    token = token.strip()
    if not (token.startswith("[") and token.endswith("]")):
        return [text(token)]
    return [text(t) for t in _strace.split_args(token[1:-1])][:32]


def result_of(call: _strace.Syscall) -> str:
    if call.injected:
        return "refused"
    return call.errno if call.errno else ("?" if call.result == "?" else "ok")


@dataclass(frozen=True)
class Call:
    """One syscall, its phase, and the state of the processes as the log has shown it so far."""

    call: _strace.Syscall
    phase: Phase
    state: State
    worker_socket: str

    @property
    def pid(self) -> int:
        return self.call.pid

    @property
    def name(self) -> str:
        return self.call.name

    @property
    def args(self) -> tuple[str, ...]:
        return self.call.args

    @property
    def ok(self) -> bool:
        return not self.call.injected and not self.call.errno and self.call.result != "?"

    @property
    def returned(self) -> int | None:
        """The result as a number, when the call succeeded."""
        return number(self.call.result) if self.ok else None

    @property
    def startup(self) -> bool:
        return self.phase is Phase.STARTUP

    def arg(self, i: int) -> str:
        return self.args[i] if i < len(self.args) else ""

    def fd_arg(self, i: int) -> int | None:
        return number(self.arg(i))

    def fd(self, i: int) -> Fd | None:
        n = self.fd_arg(i)
        return self.state.fd(self.pid, n) if n is not None else None

    def resolve(self, i: int, dirfd: int | None = None, follow: bool = True) -> paths.Resolved:
        """The path argument `i`, relative to the descriptor argument `dirfd` or the cwd."""
        token = self.arg(i)
        raw = text(token)
        base, label = self.base(dirfd)
        resolved = paths.normalise(raw, self.pid, self.state, base, label, follow)
        if _CUT.search(token.strip()):  # strace cut the string: the rest is unknown
            return paths.Resolved(resolved.path, known=False)
        return resolved

    def base(self, dirfd: int | None) -> tuple[str | None, str]:
        """The directory a relative path starts from, and what to call it when unknown."""
        token = self.arg(dirfd).strip() if dirfd is not None else "AT_FDCWD"
        if token == "AT_FDCWD":  # noqa: S105 - a dirfd, not a secret
            return self.state.cwd_of(self.pid), "cwd"
        n = number(token)
        found = self.state.fd_path(self.pid, n) if n is not None else None
        return found, f"fd {token[:12]}"

    def ev(self, kind: str, summary: str, **detail: DetailValue) -> Event:
        c = self.call
        return Event(
            time=c.time,
            phase=self.phase,
            source=Source.TRACER,
            kind=kind,
            summary=summary[:300],
            pid=c.pid,
            result=result_of(c),
            detail={"syscall": c.name, **detail},
        )


def path_detail(r: paths.Resolved, raw: str) -> dict[str, DetailValue]:
    """What a file event says of a path: where it resolves, and how it was spelled."""
    out: dict[str, DetailValue] = {"path": r.path}
    if raw != r.path:
        out["raw"] = raw[:512]
    if not r.known:
        out["resolved"] = False
    return out
