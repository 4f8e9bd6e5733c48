"""Pickle globals judged by the full dotted path they resolve to, never by their module alone.

The unpickler imports `module` and then, from protocol 4 on (a PROTO opcode anywhere sets it),
walks `name` one attribute at a time: `torch._utils` + `os.system` is os.system. So a global is
judged by the whole path `module.name`, segment by segment, as text: nothing is imported here to
resolve it (the host imports nothing a model names). The text is normalised first (NFKC,
whitespace around segments, empty segments, `__builtin__` and the other names Python 2 pickles
use, as the unpickler maps them under protocols 0 to 2); a name that needed normalising, or that
was cut short, can be no exact name of anything, and is malformed.

- dangerous (critical): the path passes through a module or attribute that runs code, reaches
  the interpreter's internals or opens the process to the world (os, subprocess, builtins.eval,
  getattr, __globals__, __subclasses__, sys, importlib, ...), wherever in the path it sits;
- malformed (high): the path is not exact text (see above);
- ordinary (None): the path is on the allow-list of full paths benign checkpoints use
  (runner.rules.pickle_allowed), exactly;
- unusual (medium): everything else, under torch and numpy too.
"""

from __future__ import annotations

import unicodedata
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass

from runner.rules.catalog import Severity
from runner.rules.pickle_allowed import ALLOWED

# Modules whose presence anywhere in a path makes it dangerous (compared casefolded).
_DANGEROUS_MODULES = (
    *("os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "socket", "_socket", "ssl"),
    *("ctypes", "_ctypes", "cffi", "runpy", "importlib", "imp", "_imp", "zipimport", "pkgutil"),
    *("shutil", "timeit", "cProfile", "profile", "_lsprof", "code", "codeop", "pdb", "bdb"),
    *("multiprocessing", "_multiprocessing", "webbrowser", "marshal", "sys", "commands"),
    *("urllib", "urllib2", "requests", "http", "httplib", "ftplib", "smtplib", "telnetlib"),
    *("asyncio", "_pickle", "pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"),
    *("signal", "_signal", "mmap", "gc", "_thread", "paramiko", "setuptools", "distutils"),
    *("pip", "ensurepip", "venv", "cpp_extension", "_io"),
)
# Attributes that are dangerous wherever they are reached from.
_DANGEROUS_ATTRIBUTES = (
    *("eval", "compile", "__import__", "getattr", "setattr", "delattr", "globals", "locals"),
    *("vars", "breakpoint", "open", "system", "attrgetter", "methodcaller", "load", "loads"),
    *("unsafe_load", "full_load", "load_library", "load_inline", "load_module", "LoadLibrary"),
    *("CDLL", "PyDLL", "WinDLL", "cdll", "pydll", "dlopen", "import_module", "resolve_name"),
    *("run_path", "run_module", "_run_code", "_run_module_code", "_run_module_as_main"),
    *("runctx", "runcall", "runcode", "runsource", "runstring", "_forward_from_src"),
    *("check_output", "check_call", "getoutput", "getstatusoutput", "FileIO", "add_extension"),
    *("_extension_registry", "_inverted_registry", "_extension_cache", "dispatch_table"),
    *("f_globals", "f_locals", "f_builtins", "f_back", "gi_frame", "cr_frame", "tb_frame"),
    *("co_code", "__globals__", "__builtins__", "__subclasses__", "__code__", "__closure__"),
    *("__self__", "__dict__", "__class__", "__base__", "__bases__", "__mro__", "__func__"),
    *("__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__reduce__"),
    *("__reduce_ex__", "__loader__", "__spec__", "__build_class__", "__objclass__"),
    *("__traceback__", "__kwdefaults__", "__defaults__"),
)
# Attribute names that start like a way to run a program or code (exec, execv, spawnlp, ...).
_DANGEROUS_PREFIXES = ("exec", "spawn", "posix_spawn", "popen", "fork", "_popen")
# Pairs (and longer runs) dangerous together, harmless apart.
_DANGEROUS_RUNS = (
    *(("builtins", n) for n in ("input", "memoryview")),
    *(("functools", n) for n in ("partial", "reduce", "partialmethod")),
    ("operator", "itemgetter"),
    *(("types", n) for n in ("CodeType", "FunctionType", "MethodType", "ModuleType")),
    ("uuid", "_get_command_stdout"),
    *(("platform", n) for n in ("_syscmd_file", "_syscmd_ver", "_syscmd_uname")),
    *(("numpy", n) for n in ("testing", "distutils", "f2py", "ctypeslib")),
    *(("torch", n) for n in ("hub", "package")),
)
_SINGLE = frozenset(s.casefold() for s in (*_DANGEROUS_MODULES, *_DANGEROUS_ATTRIBUTES))
_MODULES = frozenset(s.casefold().lstrip("_") for s in _DANGEROUS_MODULES)  # `_sys` is sys
_RUNS = frozenset(tuple(s.casefold() for s in run) for run in _DANGEROUS_RUNS)
_LONGEST_RUN = max(len(r) for r in _RUNS)
_PYTHON2 = {"__builtin__": "builtins", "exceptions": "builtins"}  # in any position


@dataclass(frozen=True)
class Judgement:
    severity: Severity | None  # None: ordinary
    path: str  # the full dotted path, normalised
    why: str  # what made it so, for the finding's message

    @property
    def malformed(self) -> bool:
        return self.severity is Severity.HIGH


def judge_global(module: str, name: str) -> Judgement:
    """What importing `module` + `name` amounts to, by the full dotted path's text."""
    exact = _exact(module) and _exact(name)
    mod, nam = _segments(module), _segments(name)
    variants = [(mod, nam)]
    key = (".".join(mod), ".".join(nam))  # the unpickler maps the stripped text
    if key in NAME_MAPPING:  # what protocols 0 to 2 resolve Python 2 names to
        new_module, new_name = NAME_MAPPING[key]
        variants.append((new_module.split("."), new_name.split(".")))
    elif key[0] in IMPORT_MAPPING:
        variants.append((IMPORT_MAPPING[key[0]].split("."), nam))
    path = ".".join([*mod, *nam]) if exact else f"{module}.{name}"  # shown as read when odd
    if exact and any(".".join([*m, *n]) in ALLOWED for m, n in variants):
        return Judgement(None, path, "on the allow-list")  # exact full paths, curated
    for m, n in variants:
        danger = _danger([*m, *n])
        if danger:
            return Judgement(Severity.CRITICAL, path, f"it passes through {danger}")
    if not exact or not mod or not nam:
        return Judgement(Severity.HIGH, path, "the name is malformed or cut short")
    dotted = len(nam) > 1
    why = "an attribute path, on no allow-list" if dotted else "not on the allow-list"
    return Judgement(Severity.MEDIUM, path, why)


def classify_global(module: str, name: str) -> Severity | None:
    """How bad it is for a pickle to import module.name: None when it is ordinary."""
    return judge_global(module, name).severity


def _segments(text: str) -> list[str]:
    """The dotted segments of a name, normalised: NFKC, stripped, no empty ones."""
    parts = (part.strip() for part in unicodedata.normalize("NFKC", text).split("."))
    return [seg for seg in parts if seg]


def _exact(text: str) -> bool:
    """A name that normalising leaves as it is: dotted identifiers, no cut mark."""
    return all(part.isidentifier() for part in text.split(".")) and text == unicodedata.normalize(
        "NFKC", text
    )


def _danger(segments: list[str]) -> str:
    """The dangerous module, attribute or run of them the path passes through, or ""."""
    folded = [_PYTHON2.get(s, s).casefold() for s in segments]
    for i, seg in enumerate(folded):
        if seg in _SINGLE or seg.lstrip("_") in _MODULES or seg.startswith(_DANGEROUS_PREFIXES):
            return segments[i]
        for n in range(2, _LONGEST_RUN + 1):
            if tuple(folded[i : i + n]) in _RUNS:
                return ".".join(segments[i : i + n])
    return ""
