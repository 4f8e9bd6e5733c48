"""The rule table: every rule's stable id, name, title and severity, and the finding and
verdict types. The table is documented in docs/rules.md, which a test keeps in step with RULES.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from runner.rules import catalog_evidence as _evidence
from runner.rules import catalog_gguf as _gguf
from runner.rules import catalog_hf as _hf
from runner.rules import catalog_host as _host
from runner.rules import catalog_keras as _keras
from runner.rules import catalog_parsers as _parsers
from runner.rules import catalog_pickles as _pickles
from runner.rules import catalog_sklearn as _sklearn
from runner.rules import catalog_tf as _tf
from runner.rules import catalog_tracer as _tracer
from runner.rules.rule_names import RuleName as RuleName  # re-exported
from runner.telemetry.events import Phase, Source


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
    name: RuleName
    title: str
    severity: Severity
    evidence: str  # what the finding cites


def _rows(rows: tuple[_tracer.Row, ...]) -> tuple[Rule, ...]:
    return tuple(Rule(i, RuleName[n], t, Severity[v], e) for i, n, t, v, e in rows)


RULES: tuple[Rule, ...] = (
    Rule(
        "AL101",
        RuleName.NETWORK_ATTEMPT,
        "Network connection attempted",
        Severity.HIGH,
        "tracer: connect, or sendto/sendmsg/sendmmsg to an IP address or a named Unix socket "
        "(given in the call or by the socket's connect; any address, loopback included)",
    ),
    Rule(
        "AL102",
        RuleName.NAME_LOOKUP,
        "Host name lookup attempted",
        Severity.HIGH,
        "tracer: a connect to port 53 or to the nscd socket; worker: socket.getaddrinfo",
    ),
    Rule(
        "AL103",
        RuleName.NETWORK_LISTEN,
        "Listening socket opened",
        Severity.HIGH,
        "tracer: bind to an IP address, listen, or accept a connection (for a GGUF model, "
        "llama.cpp's own loopback listener in the load phase is allowed: rules/allowances.py)",
    ),
    Rule(
        "AL104",
        RuleName.RAW_SOCKET,
        "Unusual socket family",
        Severity.MEDIUM,
        "tracer: socket() with AF_PACKET, AF_NETLINK or another non-IP, non-Unix family, "
        "or data sent on one",
    ),
    *_rows(_tracer.NETWORK),
    Rule(
        "AL201",
        RuleName.PROCESS_SPAWNED,
        "Process spawned",
        Severity.HIGH,
        "tracer: fork/vfork/clone without CLONE_THREAD, or execve",
    ),
    Rule(
        "AL202",
        RuleName.SHELL_EXECUTED,
        "Shell executed",
        Severity.CRITICAL,
        "tracer: execve of sh, bash, dash, ...; worker: os.system",
    ),
    *_rows(_tracer.PROCESS),
    Rule(
        "AL301",
        RuleName.WRITE_OUTSIDE_SCRATCH,
        "Write outside the scratch directory",
        Severity.HIGH,
        "tracer: open for writing, creat, rename, unlink, mkdir, chmod, ... of "
        "a path outside /tmp (the attempt counts, even though the root is read-only)",
    ),
    Rule(
        "AL302",
        RuleName.WRITE_IN_SCRATCH,
        "File written in the scratch directory",
        Severity.LOW,
        "tracer: a file opened for writing under /tmp",
    ),
    Rule(
        "AL303",
        RuleName.SENSITIVE_READ,
        "Sensitive file read",
        Severity.CRITICAL,
        "tracer: open of credentials and keys, /proc/*/environ, /etc/shadow, the Docker "
        "socket, cloud credential files",
    ),
    Rule(
        "AL304",
        RuleName.SANDBOX_PROBE,
        "Sandbox probing",
        Severity.MEDIUM,
        "tracer: reads of /.dockerenv, /proc/1/cgroup, mountinfo, /proc/*/status (TracerPid), "
        "DMI and hypervisor files",
    ),
    *_rows(_tracer.FILES),
    Rule(
        "AL401",
        RuleName.PRIVILEGE_ATTEMPT,
        "Privilege change attempted",
        Severity.CRITICAL,
        "tracer: setuid/setgid family, capset",
    ),
    Rule(
        "AL402",
        RuleName.ESCAPE_ATTEMPT,
        "Sandbox escape syscall attempted",
        Severity.CRITICAL,
        "tracer: mount, unshare, setns, ptrace, bpf, keyctl, module loading, personality, ... "
        "(refused by the tracer)",
    ),
    Rule(
        "AL403",
        RuleName.SIGNAL_OTHER_PROCESS,
        "Signal sent to another process",
        Severity.CRITICAL,
        "tracer: kill/tkill/tgkill/rt_sigqueueinfo/rt_tgsigqueueinfo/pidfd_send_signal aimed "
        "at the tracer or any process outside the caller's own",
    ),
    Rule(
        "AL404",
        RuleName.TRACER_TAMPERING,
        "Tracer tampering or lost trace",
        Severity.CRITICAL,
        "host: the tracer exited non-zero or early, the worker's exit record is missing, or "
        "the log ends mid-line",
    ),
    *_rows(_tracer.PRIVILEGE),
    Rule(
        "AL501",
        RuleName.MEMORY_LIMIT,
        "Memory limit hit",
        Severity.MEDIUM,
        "host: the container was OOM-killed (Docker's OOMKilled, cgroup accounting)",
    ),
    Rule(
        "AL502",
        RuleName.PIDS_LIMIT,
        "Process limit hit",
        Severity.MEDIUM,
        "host: the cgroup's pids.events max counter, or a runsc sandbox that died of it",
    ),
    Rule(
        "AL503",
        RuleName.DEADLINE,
        "Deadline passed",
        Severity.MEDIUM,
        "host: the load, a call or the wall-time deadline passed and the sandbox was killed",
    ),
    Rule(
        "AL504",
        RuleName.REPLY_TOO_LARGE,
        "Reply larger than the limit",
        Severity.MEDIUM,
        "host: the gRPC client refused a reply above max_reply_bytes",
    ),
    Rule(
        "AL505",
        RuleName.WORKER_CRASHED,
        "Worker crashed",
        Severity.MEDIUM,
        "host: the worker died (signal or exit code) without being asked to",
    ),
    Rule(
        "AL506",
        RuleName.SCRATCH_FULL,
        "Scratch space filled",
        Severity.MEDIUM,
        "host: the /tmp tmpfs reached 95% of its size (statvfs through /proc/PID/root)",
    ),
    Rule(
        "AL507",
        RuleName.OUTPUT_FLOOD,
        "Output flood",
        Severity.MEDIUM,
        "host: more than 1 MiB written to stdout/stderr (the engine's log rotated)",
    ),
    *_rows(_parsers.LOAD_COST),
    *_rows(_pickles.WORKER),
    Rule(
        "AL603",
        RuleName.DYNAMIC_CODE,
        "Dynamic code executed",
        Severity.HIGH,
        "worker: exec/compile of code that is not a library's, while loading or inferring",
    ),
    Rule(
        "AL604",
        RuleName.NATIVE_CODE,
        "Native library loaded from Python",
        Severity.HIGH,
        "worker: ctypes.dlopen",
    ),
    Rule(
        "AL605",
        RuleName.PYTHON_PROCESS,
        "Process started from Python",
        Severity.HIGH,
        "worker: subprocess.Popen, os.exec*, os.posix_spawn, os.fork, pty.spawn",
    ),
    Rule(
        "AL606",
        RuleName.PYTHON_NETWORK,
        "Network use from Python",
        Severity.HIGH,
        "worker: socket.connect, socket.sendto, socket.bind, name lookups",
    ),
    Rule(
        "AL607",
        RuleName.INTERPRETER_INTROSPECTION,
        "Interpreter objects walked",
        Severity.HIGH,
        "worker: gc.get_objects, gc.get_referrers, gc.get_referents, sys._current_frames "
        "(common ways for model code to reach the worker's own sockets, files and shared "
        "memory; not every way: frames reached through a traceback raise no event)",
    ),
    *_rows(_pickles.STATIC),
    *_rows(_parsers.SIGNS),
    Rule(
        "AL701",
        RuleName.TAMPERED_FILE,
        "File shows signs of tampering",
        Severity.HIGH,
        "static: a safetensors header or offsets past the end, a zip CRC mismatch, a local "
        "header that disagrees with the central directory, bytes no zip member owns or after "
        "the archive, a torch member never referenced, bytes after a pickle's STOP, a "
        "pickle+zip polyglot, a zip-bomb member",
    ),
    Rule(
        "AL702",
        RuleName.PATH_ESCAPE,
        "Model reaches outside its directory",
        Severity.HIGH,
        "static: ONNX external data with `..` or an absolute path, or a symlink in the "
        "model that leads outside it",
    ),
    Rule(
        "AL703",
        RuleName.STATIC_CHECK_ABORTED,
        "Static pre-flight did not finish",
        Severity.MEDIUM,
        "static: the pre-flight read of the files exceeded its time or "
        "memory bound (a file built to stall a parser), or crashed",
    ),
    *_rows(_host.ROWS),
    Rule(
        "AL801",
        RuleName.BEHAVIOR_DEVIATION,
        "Behaviour deviates from the base model",
        Severity.HIGH,
        "host (diff): a probe category whose top-1 predictions flip from the base model's "
        "significantly more than the control's (exact test, Benjamini-Hochberg) and by at "
        "least the effect-size gate",
    ),
    Rule(
        "AL802",
        RuleName.BASELINE_DRIFT,
        "Behaviour drifted from the recorded baseline",
        Severity.MEDIUM,
        "host (baseline): outputs on the recorded probes differ from the "
        "baseline: any difference on the same image and runtime; elsewhere, a category whose "
        "top-1 predictions flip significantly (or, for outputs with no classes, differences "
        "beyond the tolerance)",
    ),
    Rule(
        "AL811",
        RuleName.SIGNATURE_INVALID,
        "Signature does not verify",
        Severity.HIGH,
        "static: the model's signature failed verification against the trust "
        "policy, or its signed digest differs from the model's files",
    ),
    Rule(
        "AL812",
        RuleName.SIGNATURE_MISSING,
        "Model is not signed",
        Severity.MEDIUM,
        "static: --require-signature was given and no signature was found",
    ),
    Rule(
        "AL813",
        RuleName.PROVENANCE_MISMATCH,
        "Declared provenance does not match",
        Severity.MEDIUM,
        "static: a digest in the model's provenance file or model card differs from the "
        "model's (or the base model's) root digest",
    ),
    *_rows(_evidence.ROWS),
    Rule(
        "AL911",
        RuleName.MALFORMED_REPLY,
        "Malformed reply from the worker",
        Severity.MEDIUM,
        "host: a gRPC or data-plane reply that did not parse or validate (bytes that are not "
        "the message, sizes that lie, dtypes, ranks, counts or names out of bounds, outputs "
        "outside the shared-memory window or named alike)",
    ),
    Rule(
        "AL912",
        RuleName.DESCRIPTION_OUT_OF_BOUNDS,
        "Model description out of bounds",
        Severity.MEDIUM,
        "host: the worker described more than 1024 inputs or outputs, more than 32 "
        "dimensions, negative sizes, a tensor of more than 2^40 elements, names over 1024 "
        "characters or two tensors named alike (the model is then not fed)",
    ),
    Rule(
        "AL913",
        RuleName.DECEPTIVE_NAME,
        "Name made to deceive a reader",
        Severity.MEDIUM,
        "host: a tensor name the worker gave; static: a file name in the model or the "
        "model's path; holding terminal control characters (ESC, C1 controls, DEL, carriage "
        "return, backspace), line separators or bidi overrides (shown neutralised everywhere)",
    ),
    *_rows(_hf.ROWS),
    *_rows(_sklearn.ROWS),
    *_rows(_keras.ROWS),
    *_rows(_gguf.ROWS),
    *_rows(_tf.ROWS),
)
# The formats' own static findings: TamperKind value -> (rule, message)
FORMAT_SIGNS: dict[str, tuple[RuleName, str]] = {
    kind: (RuleName[member], message)
    for table in (_sklearn.SIGNS, _keras.SIGNS, _gguf.SIGNS, _tf.SIGNS)
    for kind, (member, message) in table.items()
}
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


def verdict(findings: Iterable[Finding], could_not_evaluate: bool) -> Verdict:
    worst = max((f.severity.rank for f in findings), default=-1)
    if worst >= Severity.CRITICAL.rank:
        return Verdict.MALICIOUS
    if worst >= Severity.MEDIUM.rank:
        return Verdict.SUSPICIOUS
    if could_not_evaluate:
        return Verdict.ERROR
    return Verdict.CLEAN


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then in rule order, then by phase."""
    order = {r.id: i for i, r in enumerate(RULES)}
    return sorted(
        findings,
        key=lambda f: (
            -f.severity.rank,
            order[f.rule_id],
            list(Phase).index(f.phase) if f.phase else 9,
        ),
    )
