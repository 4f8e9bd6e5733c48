"""Pickle globals: which imports a pickle performs are dangerous, unusual or ordinary."""

from __future__ import annotations

from runner.rules.catalog import Severity

DANGEROUS_GLOBALS = {
    "os": None,
    "posix": None,
    "nt": None,
    "subprocess": None,
    "pty": None,
    "socket": None,
    "ctypes": None,
    "runpy": None,
    "importlib": None,
    "pkgutil": None,
    "shutil": None,
    "timeit": None,
    "cProfile": None,
    "profile": None,
    "code": None,
    "codeop": None,
    "pdb": None,
    "multiprocessing": None,
    "uuid": {"_get_command_stdout", "_popen"},
    "webbrowser": None,
    "marshal": None,
    "sys": None,
    "commands": None,
    "urllib": None,
    "requests": None,
    "http": None,
    "asyncio": None,
    "platform": {"popen", "_syscmd_file"},
    "builtins": {
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "memoryview",
    },
    "__builtin__": {"eval", "exec", "compile", "open", "__import__", "getattr", "setattr"},
    "operator": {"attrgetter", "methodcaller", "itemgetter"},
    "functools": {"partial"},
    "numpy.testing._private.utils": None,
    "torch.hub": None,
    "torch.serialization": {"load"},
    "types": {"CodeType", "FunctionType"},
    "_pickle": None,
    "pickle": None,
}
SAFE_GLOBAL_PREFIXES = ("torch.", "collections.", "numpy.", "_codecs.", "copyreg.")
SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("_codecs", "encode"),
    ("torch", "Size"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
}


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
    if (
        (module, name) in SAFE_GLOBALS
        or module == "torch"
        or module.startswith(SAFE_GLOBAL_PREFIXES)
        or module in ("collections", "numpy", "_codecs", "copyreg")
    ):
        return None
    return Severity.MEDIUM
