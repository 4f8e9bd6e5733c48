"""Rule evaluation: events, resources and static checks in; findings out.

Each event rule reads one event; host rules read the facts the host gathered itself (the
container's exit state, the sampler, the static read). Findings of one rule in one phase from one
source are merged, with their evidence and event counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runner.rules.catalog import BY_NAME, Finding, RuleName, Severity, ordered
from runner.rules.pickle_globals import classify_global
from runner.telemetry.events import SCRATCH_PREFIXES, Event, Phase, Source


@dataclass(frozen=True)
class HostFacts:
    """What the host itself established about the run."""

    oom_killed: bool = False
    pids_limit_hit: bool = False
    deadline: str = ""  # "load", "call", "wall", "startup" or ""
    reply_too_large: bool = False
    worker_crashed: str = ""  # description, when the worker died unasked
    tracer_problems: tuple[str, ...] = ()
    tamper: tuple[tuple[str, str], ...] = ()  # (check, evidence) from the static checks
    scratch_full: bool = False
    output_flood: bool = False
    static_imports: tuple[tuple[str, str, str], ...] = ()  # (module, name, where)
    static_aborted: str = ""  # why the static pre-flight did not finish
    signature_failure: str = ""  # why a signature did not verify
    signature_missing: bool = False  # required, and there was none
    provenance_mismatches: tuple[str, ...] = ()


PATH_ESCAPES = {"onnx-external-data", "symlink-escape"}


def _in_scratch(path: str) -> bool:
    return path.startswith(SCRATCH_PREFIXES) or path in ("/tmp", "/dev/shm")


class _Collector:
    def __init__(self) -> None:
        self.found: dict[tuple[str, Phase | None, Source], Finding] = {}

    def add(
        self,
        rule_name: RuleName,
        phase: Phase | None,
        source: Source,
        message: str,
        evidence: Iterable[str],
        count: int = 1,
    ) -> None:
        rule = BY_NAME[rule_name]
        key = (rule.id, phase, source)
        ev = list(evidence)
        if key in self.found:
            old = self.found[key]
            merged = old.evidence + [e for e in ev if e not in old.evidence]
            self.found[key] = old.model_copy(
                update={"evidence": merged[:10], "event_count": old.event_count + count}
            )
            return
        self.found[key] = Finding(
            rule_id=rule.id,
            rule=rule.name,
            title=rule.title,
            severity=rule.severity,
            phase=phase,
            source=source,
            message=message,
            evidence=ev[:10],
            event_count=count,
        )


def evaluate(events: Iterable[Event], facts: HostFacts) -> list[Finding]:
    c = _Collector()
    for e in events:
        _event_rules(c, e)
    _host_rules(c, facts)
    return ordered(c.found.values())


def _event_rules(c: _Collector, e: Event) -> None:
    k, d = e.kind, e.detail
    cite = (
        f"[{e.source.value}] {e.summary}"
        + (f" = {e.result}" if e.result else "")
        + (f" (x{e.count})" if e.count > 1 else "")
    )

    def add(name: RuleName, msg: str) -> None:
        c.add(name, e.phase, e.source, msg, [cite], e.count)

    if k == "process.exec":
        base = str(d.get("path", "")).rsplit("/", 1)[-1]
        if base in {"sh", "bash", "dash", "zsh", "ash", "ksh", "busybox", "csh", "fish"}:
            add(RuleName.SHELL_EXECUTED, f"a shell ran: {e.summary}")
        else:
            add(RuleName.PROCESS_SPAWNED, f"a program ran: {e.summary}")
    elif k == "process.fork":
        add(RuleName.PROCESS_SPAWNED, "the model created a child process")
    elif k in ("net.connect", "net.sendto", "net.sendmmsg"):
        if d.get("family") == "AF_UNIX":
            if str(d.get("address", "")).endswith(("docker.sock", "containerd.sock")):
                add(
                    RuleName.SENSITIVE_READ,
                    f"the model reached for a container engine socket: {e.summary}",
                )
            else:
                add(RuleName.NETWORK_ATTEMPT, f"the model connected to a Unix socket: {e.summary}")
        else:
            add(RuleName.NETWORK_ATTEMPT, f"the model tried the network: {e.summary}")
    elif k == "net.lookup":
        add(RuleName.NAME_LOOKUP, f"the model tried to resolve a name: {e.summary}")
    elif k in ("net.bind", "net.listen"):
        add(RuleName.NETWORK_LISTEN, f"the model tried to accept connections: {e.summary}")
    elif k == "net.socket":
        if d.get("family") not in ("AF_INET", "AF_INET6"):
            add(RuleName.RAW_SOCKET, f"the model opened an unusual socket: {e.summary}")
    elif k in ("file.write", "file.modify"):
        raw = d.get("paths") or d.get("path") or ""
        paths = [str(p) for p in raw] if isinstance(raw, list) else [str(raw)]
        if all(_in_scratch(str(p)) for p in paths):
            add(RuleName.WRITE_IN_SCRATCH, f"the model wrote in scratch: {e.summary}")
        else:
            add(
                RuleName.WRITE_OUTSIDE_SCRATCH,
                f"the model tried to write outside scratch: {e.summary}",
            )
    elif k == "file.sensitive_read":
        add(RuleName.SENSITIVE_READ, f"the model read a sensitive file: {e.summary}")
    elif k == "file.probe":
        add(RuleName.SANDBOX_PROBE, f"the model probed its environment: {e.summary}")
    elif k == "priv.setid":
        add(RuleName.PRIVILEGE_ATTEMPT, f"the model tried to change its identity: {e.summary}")
    elif k == "priv.escape":
        add(RuleName.ESCAPE_ATTEMPT, f"the model tried an escape syscall: {e.summary}")
    elif k == "signal.send":
        add(RuleName.SIGNAL_OTHER_PROCESS, f"the model signalled another process: {e.summary}")
    elif k == "python.pickle.find_class":
        sev = classify_global(str(d.get("module", "")), str(d.get("name", "")))
        if sev is Severity.CRITICAL:
            add(
                RuleName.DANGEROUS_PICKLE_IMPORT,
                f"unpickling imported {d.get('module')}.{d.get('name')}",
            )
        elif sev is not None:
            add(
                RuleName.UNUSUAL_PICKLE_IMPORT,
                f"unpickling imported {d.get('module')}.{d.get('name')}",
            )
    elif k in ("python.exec", "python.compile"):
        add(RuleName.DYNAMIC_CODE, f"the model ran dynamic code: {e.summary}")
    elif k == "python.ctypes.dlopen":
        add(RuleName.NATIVE_CODE, f"the model loaded a native library: {e.summary}")
    elif k == "python.os.system":
        add(RuleName.SHELL_EXECUTED, f"the model called os.system: {e.summary}")
    elif k in (
        "python.subprocess.Popen",
        "python.os.exec",
        "python.os.posix_spawn",
        "python.os.fork",
        "python.os.forkpty",
        "python.pty.spawn",
        "python.os.spawn",
    ):
        add(RuleName.PYTHON_PROCESS, f"the model started a process: {e.summary}")
    elif k in (
        "python.socket.connect",
        "python.socket.sendto",
        "python.socket.bind",
        "python.socket.getaddrinfo",
        "python.socket.gethostbyname",
        "python.socket.gethostbyname_ex",
        "python.socket.gethostbyaddr",
        "python.http.client.connect",
        "python.urllib.Request",
    ):
        add(RuleName.PYTHON_NETWORK, f"the model used the network: {e.summary}")
    elif k in (
        "python.gc.get_objects",
        "python.gc.get_referrers",
        "python.gc.get_referents",
        "python.sys._current_frames",
    ):
        add(
            RuleName.INTERPRETER_INTROSPECTION,
            f"the model walked the interpreter's objects: {e.summary}",
        )


def _host_rules(c: _Collector, f: HostFacts) -> None:
    h = Source.HOST
    if f.oom_killed:
        c.add(
            RuleName.MEMORY_LIMIT,
            None,
            h,
            "the sandbox was killed for exceeding its memory limit",
            ["Docker: State.OOMKilled = true"],
        )
    if f.pids_limit_hit:
        c.add(
            RuleName.PIDS_LIMIT,
            None,
            h,
            "the model hit the process limit",
            ["cgroup: pids.events max > 0, or the runsc sandbox died of it"],
        )
    if f.deadline:
        c.add(
            RuleName.DEADLINE,
            None,
            h,
            f"the {f.deadline} deadline passed; the sandbox was killed",
            [f"host: {f.deadline} deadline exceeded"],
        )
    if f.reply_too_large:
        c.add(
            RuleName.REPLY_TOO_LARGE,
            None,
            h,
            "the worker's reply exceeded the size limit",
            ["gRPC: reply above max_reply_bytes refused"],
        )
    if f.worker_crashed:
        c.add(
            RuleName.WORKER_CRASHED,
            None,
            h,
            f"the worker died: {f.worker_crashed}",
            [f"Docker: {f.worker_crashed}"],
        )
    if f.tracer_problems:
        c.add(
            RuleName.TRACER_TAMPERING,
            None,
            h,
            "the trace is incomplete or the tracer was disturbed",
            list(f.tracer_problems),
        )
    if f.scratch_full:
        c.add(
            RuleName.SCRATCH_FULL,
            None,
            h,
            "the model filled its scratch space",
            ["statvfs: /tmp at 95% or more of its size"],
        )
    if f.output_flood:
        c.add(
            RuleName.OUTPUT_FLOOD,
            None,
            h,
            "the model flooded stdout/stderr",
            ["the engine's json-file log rotated past 1 MiB"],
        )
    h = Source.STATIC
    for module, name, where in f.static_imports:
        cite = [f"static: the pickle{where} imports {module}.{name}"]
        if module == "?" or name == "?":
            c.add(
                RuleName.STATIC_HIDDEN_IMPORT,
                None,
                h,
                "the pickle assembles an import name at run time",
                cite,
            )
            continue
        sev = classify_global(module, name)
        if sev is Severity.CRITICAL:
            c.add(
                RuleName.STATIC_DANGEROUS_IMPORT,
                None,
                h,
                f"the pickle would import {module}.{name}",
                cite,
            )
        elif sev is not None:
            c.add(
                RuleName.STATIC_UNUSUAL_IMPORT,
                None,
                h,
                f"the pickle would import {module}.{name}",
                cite,
            )
    if f.static_aborted:
        c.add(
            RuleName.STATIC_CHECK_ABORTED,
            None,
            h,
            f"the static pre-flight did not finish: {f.static_aborted}",
            [f"static: {f.static_aborted}"],
        )
    if f.signature_failure:
        c.add(
            RuleName.SIGNATURE_INVALID,
            None,
            h,
            f"the signature does not verify: {f.signature_failure}",
            [f"static: {f.signature_failure}"],
        )
    if f.signature_missing:
        c.add(
            RuleName.SIGNATURE_MISSING,
            None,
            h,
            "a signature is required and the model has none",
            ["static: no signature given or found next to the model"],
        )
    for m in f.provenance_mismatches:
        c.add(
            RuleName.PROVENANCE_MISMATCH,
            None,
            h,
            f"declared provenance does not match: {m}",
            [f"static: {m}"],
        )
    for check, evidence in f.tamper:
        if check in PATH_ESCAPES:
            c.add(
                RuleName.PATH_ESCAPE,
                None,
                h,
                f"the model reaches outside its directory ({check})",
                [f"static: {evidence}"],
            )
        else:
            c.add(
                RuleName.TAMPERED_FILE,
                None,
                h,
                f"the file shows signs of tampering ({check})",
                [f"static: {evidence}"],
            )


def finding(
    rule_name: RuleName,
    message: str,
    evidence: Iterable[str],
    phase: Phase | None = None,
    source: Source = Source.HOST,
) -> Finding:
    """One finding of a rule, made outside the sandbox's event rules (diffs, baselines)."""
    c = _Collector()
    c.add(rule_name, phase, source, message, evidence)
    return next(iter(c.found.values()))
