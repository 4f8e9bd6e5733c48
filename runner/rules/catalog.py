"""Rules: events, resources and static checks in; findings and a verdict out.

Each rule has a stable id, a title, a severity and says what evidence it cites. The table is
documented in docs/rules.md, which a test keeps in step with RULES.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from runner.telemetry.events import SCRATCH_PREFIXES, Event, Phase, Source


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Verdict(StrEnum):
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"
    ERROR = "error"


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    title: str
    severity: Severity
    evidence: str  # what the finding cites


RULES: tuple[Rule, ...] = (
    Rule("AL101", "network-attempt", "Network connection attempted", Severity.HIGH,
         "tracer: connect/sendto to an IP address (any address, loopback included)"),
    Rule("AL102", "name-lookup", "Host name lookup attempted", Severity.HIGH,
         "tracer: a connect to port 53 or to the nscd socket; worker: socket.getaddrinfo"),
    Rule("AL103", "network-listen", "Listening socket opened", Severity.HIGH,
         "tracer: bind to an IP address, or listen"),
    Rule("AL104", "raw-socket", "Unusual socket family", Severity.MEDIUM,
         "tracer: socket() with AF_PACKET, AF_NETLINK or another non-IP, non-Unix family"),
    Rule("AL201", "process-spawned", "Process spawned", Severity.HIGH,
         "tracer: fork/vfork/clone without CLONE_THREAD, or execve"),
    Rule("AL202", "shell-executed", "Shell executed", Severity.CRITICAL,
         "tracer: execve of sh, bash, dash, ...; worker: os.system"),
    Rule("AL301", "write-outside-scratch", "Write outside the scratch directory",
         Severity.HIGH, "tracer: open for writing, creat, rename, unlink, mkdir, chmod, ... of "
         "a path outside /tmp (the attempt counts, even though the root is read-only)"),
    Rule("AL302", "write-in-scratch", "File written in the scratch directory", Severity.LOW,
         "tracer: a file opened for writing under /tmp"),
    Rule("AL303", "sensitive-read", "Sensitive file read", Severity.CRITICAL,
         "tracer: open of credentials and keys, /proc/*/environ, /etc/shadow, the Docker "
         "socket, cloud credential files"),
    Rule("AL304", "sandbox-probe", "Sandbox probing", Severity.MEDIUM,
         "tracer: reads of /.dockerenv, /proc/1/cgroup, mountinfo, /proc/*/status (TracerPid), "
         "DMI and hypervisor files"),
    Rule("AL401", "privilege-attempt", "Privilege change attempted", Severity.CRITICAL,
         "tracer: setuid/setgid family, capset"),
    Rule("AL402", "escape-attempt", "Sandbox escape syscall attempted", Severity.CRITICAL,
         "tracer: mount, unshare, setns, ptrace, bpf, keyctl, module loading, personality, ... "
         "(refused by the tracer)"),
    Rule("AL403", "signal-other-process", "Signal sent to another process", Severity.CRITICAL,
         "tracer: kill/tkill/tgkill aimed at the tracer or any process outside the worker"),
    Rule("AL404", "tracer-tampering", "Tracer tampering or lost trace", Severity.CRITICAL,
         "host: the tracer exited non-zero or early, the worker's exit record is missing, or "
         "the log ends mid-line"),
    Rule("AL501", "memory-limit", "Memory limit hit", Severity.MEDIUM,
         "host: the container was OOM-killed (Docker's OOMKilled, cgroup accounting)"),
    Rule("AL502", "pids-limit", "Process limit hit", Severity.MEDIUM,
         "host: the cgroup's pids.events max counter, or a runsc sandbox that died of it"),
    Rule("AL503", "deadline", "Deadline passed", Severity.MEDIUM,
         "host: the load, a call or the wall-time deadline passed and the sandbox was killed"),
    Rule("AL504", "reply-too-large", "Reply larger than the limit", Severity.MEDIUM,
         "host: the gRPC client refused a reply above max_reply_bytes"),
    Rule("AL505", "worker-crashed", "Worker crashed", Severity.MEDIUM,
         "host: the worker died (signal or exit code) without being asked to"),
    Rule("AL506", "scratch-full", "Scratch space filled", Severity.MEDIUM,
         "host: the /tmp tmpfs reached 95% of its size (statvfs through /proc/PID/root)"),
    Rule("AL507", "output-flood", "Output flood", Severity.MEDIUM,
         "host: more than 1 MiB written to stdout/stderr (the engine's log rotated)"),
    Rule("AL601", "dangerous-pickle-import", "Dangerous pickle import observed",
         Severity.CRITICAL, "worker: pickle.find_class of os, subprocess, builtins.eval/exec, "
         "runpy, importlib, ctypes, ..."),
    Rule("AL602", "unusual-pickle-import", "Unusual pickle import observed", Severity.MEDIUM,
         "worker: pickle.find_class of a module outside torch, numpy and collections"),
    Rule("AL603", "dynamic-code", "Dynamic code executed", Severity.HIGH,
         "worker: exec/compile of code that is not a library's, while loading or inferring"),
    Rule("AL604", "native-code", "Native library loaded from Python", Severity.HIGH,
         "worker: ctypes.dlopen"),
    Rule("AL605", "python-process", "Process started from Python", Severity.HIGH,
         "worker: subprocess.Popen, os.exec*, os.posix_spawn, os.fork, pty.spawn"),
    Rule("AL606", "python-network", "Network use from Python", Severity.HIGH,
         "worker: socket.connect, socket.sendto, socket.bind, name lookups"),
    Rule("AL607", "interpreter-introspection", "Interpreter objects walked", Severity.HIGH,
         "worker: gc.get_objects, gc.get_referrers, gc.get_referents, sys._current_frames "
         "(common ways for model code to reach the worker's own sockets, files and shared "
         "memory; not every way: frames reached through a traceback raise no event)"),
    Rule("AL611", "static-dangerous-import", "Pickle would import something dangerous",
         Severity.CRITICAL, "static: a GLOBAL/STACK_GLOBAL in the pickle's opcodes naming "
         "os, subprocess, builtins.eval/exec, runpy, ... (read, never unpickled)"),
    Rule("AL612", "static-hidden-import", "Pickle builds an import name at run time",
         Severity.HIGH, "static: a STACK_GLOBAL whose module or name is not a literal "
         "in the stream (computed by an earlier call)"),
    Rule("AL613", "static-unusual-import", "Pickle would import something unusual",
         Severity.MEDIUM, "static: a GLOBAL/STACK_GLOBAL outside torch, numpy and "
         "collections"),
    Rule("AL701", "tampered-file", "File shows signs of tampering", Severity.HIGH,
         "static: a safetensors header or offsets past the end, a zip CRC mismatch, a local "
         "header that disagrees with the central directory, bytes no zip member owns or after "
         "the archive, a torch member never referenced, bytes after a pickle's STOP, a "
         "pickle+zip polyglot, a zip-bomb member"),
    Rule("AL702", "path-escape", "Model reaches outside its directory", Severity.HIGH,
         "static: ONNX external data with `..` or an absolute path, or a symlink in the "
         "model that leads outside it"),
    Rule("AL703", "static-check-aborted", "Static pre-flight did not finish",
         Severity.MEDIUM, "static: the pre-flight read of the files exceeded its time or "
         "memory bound (a file built to stall a parser), or crashed"),
    Rule("AL801", "behavior-deviation", "Behaviour deviates from the base model", Severity.HIGH,
         "host (diff): a probe category whose top-1 predictions flip from the base model's "
         "significantly more than the control's (exact test, Benjamini-Hochberg) and by at "
         "least the effect-size gate"),
    Rule("AL802", "baseline-drift", "Behaviour drifted from the recorded baseline",
         Severity.MEDIUM, "host (baseline): outputs on the recorded probes differ from the "
         "baseline: any difference on the same image and runtime; elsewhere, a category whose "
         "top-1 predictions flip significantly (or, for outputs with no classes, differences "
         "beyond the tolerance)"),
    Rule("AL811", "signature-invalid", "Signature does not verify", Severity.HIGH,
         "static: the model's signature failed verification against the trust "
         "policy, or its signed digest differs from the model's files"),
    Rule("AL812", "signature-missing", "Model is not signed", Severity.MEDIUM,
         "static: --require-signature was given and no signature was found"),
    Rule("AL813", "provenance-mismatch", "Declared provenance does not match", Severity.MEDIUM,
         "static: a digest in the model's provenance file or model card differs from the "
         "model's (or the base model's) root digest"),
)
BY_ID = {r.id: r for r in RULES}
BY_NAME = {r.name: r for r in RULES}


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: str
    rule: str
    title: str
    severity: Severity
    phase: Phase | None
    source: Source
    message: str
    evidence: list[str] = Field(description="the events or facts the finding cites")
    event_count: int = 1


DANGEROUS_GLOBALS = {
    "os": None, "posix": None, "nt": None, "subprocess": None, "pty": None, "socket": None,
    "ctypes": None, "runpy": None, "importlib": None, "pkgutil": None, "shutil": None,
    "timeit": None, "cProfile": None, "profile": None, "code": None, "codeop": None,
    "pdb": None, "multiprocessing": None, "uuid": {"_get_command_stdout", "_popen"},
    "webbrowser": None, "marshal": None, "sys": None, "commands": None, "urllib": None,
    "requests": None, "http": None, "asyncio": None, "platform": {"popen", "_syscmd_file"},
    "builtins": {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr",
                 "delattr", "globals", "locals", "vars", "input", "breakpoint", "memoryview"},
    "__builtin__": {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr"},
    "operator": {"attrgetter", "methodcaller", "itemgetter"}, "functools": {"partial"},
    "numpy.testing._private.utils": None, "torch.hub": None, "torch.serialization": {"load"},
    "types": {"CodeType", "FunctionType"}, "_pickle": None, "pickle": None,
}
SAFE_GLOBAL_PREFIXES = ("torch.", "collections.", "numpy.", "_codecs.", "copyreg.")
SAFE_GLOBALS = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
                ("builtins", "bytearray"), ("builtins", "slice"), ("builtins", "complex"),
                ("_codecs", "encode"), ("torch", "Size"), ("copyreg", "_reconstructor"),
                ("builtins", "object"), ("builtins", "int"), ("builtins", "float"),
                ("builtins", "tuple"), ("builtins", "list"), ("builtins", "dict")}


def classify_global(module: str, name: str) -> Severity | None:
    """How bad it is for a pickle to import module.name: None when it is ordinary."""
    if module == "__builtin__":  # protocol 2 pickles name builtins the Python 2 way
        module = "builtins"
    root = module.split(".")[0]
    for key in (module, root):
        if key in DANGEROUS_GLOBALS:
            names = DANGEROUS_GLOBALS[key]
            if names is None or name in names:
                return Severity.CRITICAL
    if (module, name) in SAFE_GLOBALS or module == "torch" or module.startswith(
            SAFE_GLOBAL_PREFIXES) or module in ("collections", "numpy", "_codecs", "copyreg"):
        return None
    return Severity.MEDIUM


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

    def add(self, rule_name: str, phase: Phase | None, source: Source, message: str,
            evidence: Iterable[str], count: int = 1) -> None:
        rule = BY_NAME[rule_name]
        key = (rule.id, phase, source)
        ev = list(evidence)
        if key in self.found:
            old = self.found[key]
            merged = old.evidence + [e for e in ev if e not in old.evidence]
            self.found[key] = old.model_copy(update={"evidence": merged[:10],
                                                     "event_count": old.event_count + count})
            return
        self.found[key] = Finding(rule_id=rule.id, rule=rule.name, title=rule.title,
                                  severity=rule.severity, phase=phase, source=source,
                                  message=message, evidence=ev[:10], event_count=count)


def evaluate(events: Iterable[Event], facts: HostFacts) -> list[Finding]:
    c = _Collector()
    for e in events:
        _event_rules(c, e)
    _host_rules(c, facts)
    return ordered(c.found.values())


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then in rule order, then by phase."""
    order = {r.id: i for i, r in enumerate(RULES)}
    return sorted(findings, key=lambda f: (-f.severity.rank, order[f.rule_id],
                                           list(Phase).index(f.phase) if f.phase else 9))


def _event_rules(c: _Collector, e: Event) -> None:
    k, d = e.kind, e.detail
    cite = f"[{e.source.value}] {e.summary}" + (f" = {e.result}" if e.result else "") + (
        f" (x{e.count})" if e.count > 1 else "")

    def add(name: str, msg: str) -> None:
        c.add(name, e.phase, e.source, msg, [cite], e.count)

    if k == "process.exec":
        base = str(d.get("path", "")).rsplit("/", 1)[-1]
        if base in {"sh", "bash", "dash", "zsh", "ash", "ksh", "busybox", "csh", "fish"}:
            add("shell-executed", f"a shell ran: {e.summary}")
        else:
            add("process-spawned", f"a program ran: {e.summary}")
    elif k == "process.fork":
        add("process-spawned", "the model created a child process")
    elif k in ("net.connect", "net.sendto", "net.sendmmsg"):
        if d.get("family") == "AF_UNIX":
            if str(d.get("address", "")).endswith(("docker.sock", "containerd.sock")):
                add("sensitive-read", f"the model reached for a container engine socket: "
                    f"{e.summary}")
            else:
                add("network-attempt", f"the model connected to a Unix socket: {e.summary}")
        else:
            add("network-attempt", f"the model tried the network: {e.summary}")
    elif k == "net.lookup":
        add("name-lookup", f"the model tried to resolve a name: {e.summary}")
    elif k in ("net.bind", "net.listen"):
        add("network-listen", f"the model tried to accept connections: {e.summary}")
    elif k == "net.socket":
        if d.get("family") not in ("AF_INET", "AF_INET6"):
            add("raw-socket", f"the model opened an unusual socket: {e.summary}")
    elif k in ("file.write", "file.modify"):
        raw = d.get("paths") or d.get("path") or ""
        paths = [str(p) for p in raw] if isinstance(raw, list) else [str(raw)]
        if all(_in_scratch(str(p)) for p in paths):
            add("write-in-scratch", f"the model wrote in scratch: {e.summary}")
        else:
            add("write-outside-scratch", f"the model tried to write outside scratch: "
                f"{e.summary}")
    elif k == "file.sensitive_read":
        add("sensitive-read", f"the model read a sensitive file: {e.summary}")
    elif k == "file.probe":
        add("sandbox-probe", f"the model probed its environment: {e.summary}")
    elif k == "priv.setid":
        add("privilege-attempt", f"the model tried to change its identity: {e.summary}")
    elif k == "priv.escape":
        add("escape-attempt", f"the model tried an escape syscall: {e.summary}")
    elif k == "signal.send":
        add("signal-other-process", f"the model signalled another process: {e.summary}")
    elif k == "python.pickle.find_class":
        sev = classify_global(str(d.get("module", "")), str(d.get("name", "")))
        if sev is Severity.CRITICAL:
            add("dangerous-pickle-import", f"unpickling imported {d.get('module')}."
                f"{d.get('name')}")
        elif sev is not None:
            add("unusual-pickle-import", f"unpickling imported {d.get('module')}.{d.get('name')}")
    elif k in ("python.exec", "python.compile"):
        add("dynamic-code", f"the model ran dynamic code: {e.summary}")
    elif k == "python.ctypes.dlopen":
        add("native-code", f"the model loaded a native library: {e.summary}")
    elif k == "python.os.system":
        add("shell-executed", f"the model called os.system: {e.summary}")
    elif k in ("python.subprocess.Popen", "python.os.exec", "python.os.posix_spawn",
               "python.os.fork", "python.os.forkpty", "python.pty.spawn", "python.os.spawn"):
        add("python-process", f"the model started a process: {e.summary}")
    elif k in ("python.socket.connect", "python.socket.sendto", "python.socket.bind",
               "python.socket.getaddrinfo", "python.socket.gethostbyname",
               "python.socket.gethostbyname_ex", "python.socket.gethostbyaddr",
               "python.http.client.connect", "python.urllib.Request"):
        add("python-network", f"the model used the network: {e.summary}")
    elif k in ("python.gc.get_objects", "python.gc.get_referrers", "python.gc.get_referents",
               "python.sys._current_frames"):
        add("interpreter-introspection", f"the model walked the interpreter's objects: "
            f"{e.summary}")


def _host_rules(c: _Collector, f: HostFacts) -> None:
    h = Source.HOST
    if f.oom_killed:
        c.add("memory-limit", None, h, "the sandbox was killed for exceeding its memory limit",
              ["Docker: State.OOMKilled = true"])
    if f.pids_limit_hit:
        c.add("pids-limit", None, h, "the model hit the process limit",
              ["cgroup: pids.events max > 0, or the runsc sandbox died of it"])
    if f.deadline:
        c.add("deadline", None, h, f"the {f.deadline} deadline passed; the sandbox was killed",
              [f"host: {f.deadline} deadline exceeded"])
    if f.reply_too_large:
        c.add("reply-too-large", None, h, "the worker's reply exceeded the size limit",
              ["gRPC: reply above max_reply_bytes refused"])
    if f.worker_crashed:
        c.add("worker-crashed", None, h, f"the worker died: {f.worker_crashed}",
              [f"Docker: {f.worker_crashed}"])
    if f.tracer_problems:
        c.add("tracer-tampering", None, h, "the trace is incomplete or the tracer was disturbed",
              list(f.tracer_problems))
    if f.scratch_full:
        c.add("scratch-full", None, h, "the model filled its scratch space",
              ["statvfs: /tmp at 95% or more of its size"])
    if f.output_flood:
        c.add("output-flood", None, h, "the model flooded stdout/stderr",
              ["the engine's json-file log rotated past 1 MiB"])
    h = Source.STATIC
    for module, name, where in f.static_imports:
        cite = [f"static: the pickle{where} imports {module}.{name}"]
        if module == "?" or name == "?":
            c.add("static-hidden-import", None, h, "the pickle assembles an import name at run "
                  "time", cite)
            continue
        sev = classify_global(module, name)
        if sev is Severity.CRITICAL:
            c.add("static-dangerous-import", None, h, f"the pickle would import {module}.{name}",
                  cite)
        elif sev is not None:
            c.add("static-unusual-import", None, h, f"the pickle would import {module}.{name}",
                  cite)
    if f.static_aborted:
        c.add("static-check-aborted", None, h, "the static pre-flight did not finish: "
              f"{f.static_aborted}", [f"static: {f.static_aborted}"])
    if f.signature_failure:
        c.add("signature-invalid", None, h, f"the signature does not verify: "
              f"{f.signature_failure}", [f"static: {f.signature_failure}"])
    if f.signature_missing:
        c.add("signature-missing", None, h, "a signature is required and the model has none",
              ["static: no signature given or found next to the model"])
    for m in f.provenance_mismatches:
        c.add("provenance-mismatch", None, h, f"declared provenance does not match: {m}",
              [f"static: {m}"])
    for check, evidence in f.tamper:
        if check in PATH_ESCAPES:
            c.add("path-escape", None, h, f"the model reaches outside its directory ({check})",
                  [f"static: {evidence}"])
        else:
            c.add("tampered-file", None, h, f"the file shows signs of tampering ({check})",
                  [f"static: {evidence}"])


def finding(rule_name: str, message: str, evidence: Iterable[str],
            phase: Phase | None = None, source: Source = Source.HOST) -> Finding:
    """One finding of a rule, made outside the sandbox's event rules (diffs, baselines)."""
    c = _Collector()
    c.add(rule_name, phase, source, message, evidence)
    return next(iter(c.found.values()))


def verdict(findings: Iterable[Finding], could_not_evaluate: bool) -> Verdict:
    worst = max((f.severity.rank for f in findings), default=-1)
    if worst >= Severity.CRITICAL.rank:
        return Verdict.MALICIOUS
    if worst >= Severity.MEDIUM.rank:
        return Verdict.SUSPICIOUS
    if could_not_evaluate:
        return Verdict.ERROR
    return Verdict.CLEAN
