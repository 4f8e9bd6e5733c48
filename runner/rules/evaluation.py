"""Rule evaluation: events, resources and static checks in; findings out.

Each event rule reads one event; host rules read the facts the host gathered itself (the
container's exit state, the sampler, the static read). Findings of one rule in one phase from one
source are merged, with their evidence and event counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from runner.policy import Deadline
from runner.rules import syscall_rules
from runner.rules.catalog import BY_NAME, FORMAT_SIGNS, Finding, RuleName, Severity, ordered
from runner.rules.cost import LoadCost, cost_findings
from runner.rules.hf_findings import hf_findings
from runner.rules.pickle_globals import judge_global
from runner.static.tamper import TamperKind
from runner.telemetry.events import Event, Phase, Source

if TYPE_CHECKING:
    from runner.report import HfInfo


class Gap(NamedTuple):
    """Evidence the host could not take whole, or that contradicts itself (AL901-AL908): each
    keeps the verdict from clean, with its counts in the evidence."""

    rule: RuleName
    message: str
    evidence: tuple[str, ...]
    tally: int = 1  # how many records the gap concerns (the finding's event count)
    source: Source = Source.HOST


@dataclass(frozen=True)
class HostFacts:
    """What the host itself established about the run."""

    oom_killed: bool = False
    pids_limit_hit: bool = False
    deadline: Deadline | None = None
    reply_too_large: bool = False
    worker_crashed: str = ""  # description, when the worker died unasked
    tracer_problems: tuple[str, ...] = ()
    tamper: tuple[tuple[TamperKind, str], ...] = ()  # (check, evidence) from the static checks
    scratch_full: bool = False
    output_flood: bool = False
    run_dir_left: tuple[str, ...] = ()  # names in /airlock/run that are not Airlock's
    static_imports: tuple[tuple[str, str, str], ...] = ()  # (module, name, where)
    static_aborted: str = ""  # why the static pre-flight did not finish
    signature_failure: str = ""  # why a signature did not verify
    signature_missing: bool = False  # required, and there was none
    provenance_mismatches: tuple[str, ...] = ()
    gaps: tuple[Gap, ...] = ()  # evidence lost, cut, folded or contradicted (runner.rules.gaps)
    load_cost: LoadCost | None = None  # the load window's memory and CPU (runner.rules.cost)
    huggingface: HfInfo | None = None  # what the host read of a repository (runner.hf.repo)


PATH_ESCAPES = {TamperKind.ONNX_EXTERNAL_DATA, TamperKind.SYMLINK_ESCAPE}
# What the static pickle read could not see: an import with no name, or a read cut short.
PICKLE_UNSEEN = {
    TamperKind.PICKLE_EXTENSION_CODE: (
        RuleName.STATIC_EXTENSION_IMPORT,
        "the pickle imports by copyreg extension code: the global is named nowhere in it",
    ),
    **dict.fromkeys(
        (TamperKind.PICKLE_OPCODE_CAP, TamperKind.PICKLE_IMPORT_CAP, TamperKind.PICKLE_UNREAD),
        (
            RuleName.STATIC_PICKLE_UNREAD,
            "the static read of the pickles did not reach their end: what follows was not checked",
        ),
    ),
}
# Parser abuse, code in metadata and torch.package code (runner.static.signs, AL620-AL625).
SIGN_RULES = {
    TamperKind.PARSER_ABUSE: (
        RuleName.PARSER_ABUSE,
        "the file is built to cost far more to parse than its size warrants",
    ),
    TamperKind.PICKLE_ALLOCATION: (
        RuleName.PICKLE_ALLOCATION,
        "the pickle asks for far more memory at load than its size warrants",
    ),
    TamperKind.METADATA_CODE: (RuleName.METADATA_CODE, "the model's metadata holds code-like text"),
    TamperKind.PACKAGE_DANGEROUS_CODE: (
        RuleName.PACKAGE_DANGEROUS_CODE,
        "the packaged code reaches processes, the network or native code",
    ),
    TamperKind.PACKAGE_DYNAMIC_CODE: (
        RuleName.PACKAGE_DYNAMIC_CODE,
        "the packaged code builds import names or code at run time",
    ),
    TamperKind.PACKAGE_UNREADABLE: (
        RuleName.PACKAGE_UNREADABLE,
        "part of the packaged code could not be read: it was not checked",
    ),
}
# What the bounded walk of the model's tree and the bounded format detection met (AL704-AL708).
WALK_RULES = {
    TamperKind.SPECIAL_FILE: (RuleName.SPECIAL_FILE, "the model holds a file no reader may open"),
    TamperKind.SYMLINK_LOOP: (RuleName.SYMLINK_LOOP, "the model holds a symlink loop"),
    TamperKind.WALK_LIMIT: (RuleName.WALK_LIMIT, "part of the model's tree was not examined"),
    TamperKind.SPARSE_FILE: (RuleName.SPARSE_FILE, "the model holds a sparse file"),
    TamperKind.DETECT_LIMIT: (
        RuleName.DETECT_LIMIT,
        "format detection stopped at its read bound; the file was not examined to the end",
    ),
}


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


_PROCESS_KINDS = (
    "python.subprocess.Popen",
    "python.os.exec",
    "python.os.posix_spawn",
    "python.os.fork",
    "python.os.forkpty",
    "python.pty.spawn",
    "python.os.spawn",
)
_NETWORK_KINDS = (
    "python.socket.connect",
    "python.socket.sendto",
    "python.socket.bind",
    "python.socket.getaddrinfo",
    "python.socket.gethostbyname",
    "python.socket.gethostbyname_ex",
    "python.socket.gethostbyaddr",
    "python.http.client.connect",
    "python.urllib.Request",
)
_INTROSPECTION_KINDS = (
    "python.gc.get_objects",
    "python.gc.get_referrers",
    "python.gc.get_referents",
    "python.sys._current_frames",
)
# Worker event kinds whose rule and message depend on the kind alone ({summary} is the
# event's). The tracer's kinds are judged in runner.rules.syscall_rules.
_BY_KIND: dict[str, tuple[RuleName, str]] = {
    "python.exec": (RuleName.DYNAMIC_CODE, "the model ran dynamic code: {summary}"),
    "python.compile": (RuleName.DYNAMIC_CODE, "the model ran dynamic code: {summary}"),
    "python.ctypes.dlopen": (RuleName.NATIVE_CODE, "the model loaded a native library: {summary}"),
    "python.os.system": (RuleName.SHELL_EXECUTED, "the model called os.system: {summary}"),
    **{
        k: (RuleName.PYTHON_PROCESS, "the model started a process: {summary}")
        for k in _PROCESS_KINDS
    },
    **{
        k: (RuleName.PYTHON_NETWORK, "the model used the network: {summary}")
        for k in _NETWORK_KINDS
    },
    **{
        k: (
            RuleName.INTERPRETER_INTROSPECTION,
            "the model walked the interpreter's objects: {summary}",
        )
        for k in _INTROSPECTION_KINDS
    },
}


def _event_rules(c: _Collector, e: Event) -> None:
    judged = _judge(e)
    if judged is None:
        return
    cite = (
        f"[{e.source.value}] {e.summary}"
        + (f" = {e.result}" if e.result else "")
        + (f" (x{e.count})" if e.count > 1 else "")
    )
    c.add(judged[0], e.phase, e.source, judged[1], [cite], e.count)


def _judge(e: Event) -> tuple[RuleName, str] | None:
    """The rule an event falls under and the finding's message; None for an ordinary event."""
    k, d = e.kind, e.detail
    if k in syscall_rules.KINDS:
        return syscall_rules.judge(e)
    if k in _BY_KIND:
        rule, template = _BY_KIND[k]
        return rule, template.format(summary=e.summary)
    if k == "python.pickle.find_class":
        return _find_class(str(d.get("module", "")), str(d.get("name", "")))
    return None


def _find_class(module: str, name: str) -> tuple[RuleName, str] | None:
    """The worker's pickle.find_class(module, name): for an EXT opcode too, what the
    extension registry resolved to. Judged by the full dotted path, as the static read is."""
    j = judge_global(module, name)
    what = f"unpickling imported {j.path} ({j.why})"
    if j.severity is Severity.CRITICAL:
        return RuleName.DANGEROUS_PICKLE_IMPORT, what
    if j.severity is not None:
        return RuleName.UNUSUAL_PICKLE_IMPORT, what
    return None


def rule_of(e: Event) -> RuleName | None:
    """The rule an event falls under (None for an ordinary event): what folding keeps apart."""
    judged = _judge(e)
    return judged[0] if judged else None


Judged = tuple[RuleName, str, list[str]]


def _host_rules(c: _Collector, f: HostFacts) -> None:
    for rule, message, evidence in _limit_findings(f):
        c.add(rule, None, Source.HOST, message, evidence)
    for g in f.gaps:
        c.add(g.rule, None, g.source, g.message, g.evidence, g.tally)
    for rule, message, evidence in _static_findings(f) + hf_findings(f.huggingface):
        c.add(rule, None, Source.STATIC, message, evidence)


def _limit_findings(f: HostFacts) -> list[Judged]:
    """What the host saw of the sandbox itself: limits hit, deadlines, a crash, the tracer."""
    checks: list[tuple[object, RuleName, str, list[str]]] = [
        (
            f.oom_killed,
            RuleName.MEMORY_LIMIT,
            "the sandbox was killed for exceeding its memory limit",
            ["Docker: State.OOMKilled = true"],
        ),
        (
            f.pids_limit_hit,
            RuleName.PIDS_LIMIT,
            "the model hit the process limit",
            ["cgroup: pids.events max > 0, or the runsc sandbox died of it"],
        ),
        (
            f.deadline,
            RuleName.DEADLINE,
            f"the {f.deadline} deadline passed; the sandbox was killed",
            [f"host: {f.deadline} deadline exceeded"],
        ),
        (
            f.reply_too_large,
            RuleName.REPLY_TOO_LARGE,
            "the worker's reply exceeded the size limit",
            ["gRPC: reply above max_reply_bytes refused"],
        ),
        (
            f.worker_crashed,
            RuleName.WORKER_CRASHED,
            f"the worker died: {f.worker_crashed}",
            [f"Docker: {f.worker_crashed}"],
        ),
        (
            f.tracer_problems,
            RuleName.TRACER_TAMPERING,
            "the trace is incomplete or the tracer was disturbed",
            list(f.tracer_problems),
        ),
        (
            f.scratch_full,
            RuleName.SCRATCH_FULL,
            "the model filled its scratch space",
            ["statvfs: /tmp at 95% or more of its size"],
        ),
        (
            f.output_flood,
            RuleName.OUTPUT_FLOOD,
            "the model flooded stdout/stderr",
            ["the engine's json-file log rotated past 1 MiB"],
        ),
        (
            f.run_dir_left,
            RuleName.AIRLOCK_DIR_WRITE,
            "the model left files in Airlock's run directory",
            [f"host: found after the container stopped: {name}" for name in f.run_dir_left],
        ),
    ]
    found = [(rule, message, evidence) for hit, rule, message, evidence in checks if hit]
    return found + cost_findings(f.load_cost)


def _static_findings(f: HostFacts) -> list[Judged]:
    """What the host read in the files' bytes, and the signature and provenance checks."""
    found = [_static_import(module, name, where) for module, name, where in f.static_imports]
    out = [j for j in found if j is not None]
    if f.static_aborted:
        out.append(
            (
                RuleName.STATIC_CHECK_ABORTED,
                f"the static pre-flight did not finish: {f.static_aborted}",
                [f"static: {f.static_aborted}"],
            )
        )
    if f.signature_failure:
        out.append(
            (
                RuleName.SIGNATURE_INVALID,
                f"the signature does not verify: {f.signature_failure}",
                [f"static: {f.signature_failure}"],
            )
        )
    if f.signature_missing:
        out.append(
            (
                RuleName.SIGNATURE_MISSING,
                "a signature is required and the model has none",
                ["static: no signature given or found next to the model"],
            )
        )
    out += [
        (RuleName.PROVENANCE_MISMATCH, f"declared provenance does not match: {m}", [f"static: {m}"])
        for m in f.provenance_mismatches
    ]
    for check, evidence in f.tamper:
        if check in PICKLE_UNSEEN:
            rule, message = PICKLE_UNSEEN[check]
            out.append((rule, message, [f"static: {evidence}"]))
        elif check in WALK_RULES:
            rule, message = WALK_RULES[check]
            out.append((rule, message, [f"static: {evidence}"]))
        elif check in SIGN_RULES:
            rule, message = SIGN_RULES[check]
            out.append((rule, message, [f"static: {evidence}"]))
        elif check in FORMAT_SIGNS:
            rule, message = FORMAT_SIGNS[check]
            out.append((rule, message, [f"static: {evidence}"]))
        elif check in PATH_ESCAPES:
            message = f"the model reaches outside its directory ({check})"
            out.append((RuleName.PATH_ESCAPE, message, [f"static: {evidence}"]))
        else:
            message = f"the file shows signs of tampering ({check})"
            out.append((RuleName.TAMPERED_FILE, message, [f"static: {evidence}"]))
    return out


def _static_import(module: str, name: str, where: str) -> Judged | None:
    """A global the static read found, judged by its full dotted path (module + every
    attribute of the name: `torch._utils` + `os.system` is os.system)."""
    cite = [f"static: the pickle{where} imports {module}.{name}"]
    if module == "?" or name == "?":
        return (
            RuleName.STATIC_HIDDEN_IMPORT,
            "the pickle assembles an import name at run time",
            cite,
        )
    j = judge_global(module, name)
    what = f"the pickle would import {j.path} ({j.why})"
    if j.severity is Severity.CRITICAL:
        return RuleName.STATIC_DANGEROUS_IMPORT, what, cite
    if j.malformed:
        return RuleName.STATIC_MALFORMED_IMPORT, what, cite
    if j.severity is not None:
        return RuleName.STATIC_UNUSUAL_IMPORT, what, cite
    return None


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
