"""What the audit hook (runner.worker.audit) may leave out as the libraries' own code, judged
by the source it is given rather than by who asked for it:

- a Hugging Face repository's code file, copied into transformers' module cache and imported:
  exempt only when its bytes are those of one of the repository's own .py files (read here as
  data, before the model's code runs: `trust_repository`), so a file the model's code writes
  into the cache and imports is dynamic code like any other;
- an annotation typing evaluates (`typing.get_type_hints`, `ForwardRef`): only a plain type
  expression (names, attributes, subscripts, constants, `|`), never a call, a lambda or a
  comprehension, since the string is the model's;
- the methods dataclasses writes from a class's field names (which it does not check): no
  import, lambda, walrus, and none of the names and attributes that reach the interpreter's
  internals (`__import__`, `eval`, `__globals__`, `__subclasses__`, frames, ...).

Never raises: a source that cannot be read is not the libraries'."""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

MAX_FILES = 500  # .py files of a repository hashed
MAX_FILE_BYTES = 4 << 20
MAX_DEPTH = 16
MAX_SOURCE_CHARS = 256 << 10  # generated source judged (dataclasses' methods are small)

_trusted: set[str] = {hashlib.sha256(b"").hexdigest()}  # the __init__.py transformers writes

_ANNOTATION_NODES = (
    ast.Expression,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Tuple,
    ast.List,
    ast.Constant,
    ast.BinOp,
    ast.BitOr,
    ast.Starred,
    ast.UnaryOp,
    ast.USub,
    ast.UAdd,
    ast.Slice,
    ast.Load,
)
_FORBIDDEN_NODES = (
    ast.Import,
    ast.ImportFrom,
    ast.Lambda,
    ast.NamedExpr,
    ast.Global,
    ast.Nonlocal,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
    ast.ClassDef,
    ast.AsyncFunctionDef,
    ast.Delete,
    ast.With,
    ast.Try,
)
_FORBIDDEN_NAMES = frozenset(
    [
        "__import__",
        "eval",
        "exec",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "__builtins__",
        "__loader__",
        "__spec__",
        "input",
        "memoryview",
        "help",
        "exit",
        "quit",
        "sys",
        "os",
    ]
)
_FORBIDDEN_ATTRS = frozenset(
    [
        "__globals__",
        "__builtins__",
        "__subclasses__",
        "__bases__",
        "__base__",
        "__mro__",
        "__code__",
        "__closure__",
        "__getattribute__",
        "__reduce__",
        "__reduce_ex__",
        "__loader__",
        "__spec__",
        "__import__",
        "__dict__",
        "__self__",
        "__func__",
        "__wrapped__",
        "__init_subclass__",
        "__class_getitem__",
        "__getattr__",
        "mro",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "ag_frame",
        "tb_frame",
        "tb_next",
        "co_code",
        "system",
        "popen",
    ]
)


def trust_repository(root: Path) -> int:
    """Record the sha256 of each regular .py file under root (bounded; symlinks never
    followed), whose bytes transformers copies into its module cache. The count hashed."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if dirpath[len(str(root)) :].count(os.sep) >= MAX_DEPTH:
            dirnames[:] = []
        for name in sorted(filenames):
            if not name.endswith(".py") or count >= MAX_FILES:
                continue
            data = _read(os.path.join(dirpath, name))
            if data is not None:
                _trusted.add(hashlib.sha256(data).hexdigest())
                count += 1
    return count


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_FILE_BYTES else None


def repository_source(source: object) -> bool:
    """Whether source (the bytes the import system compiles) is one of the repository's own
    code files."""
    if isinstance(source, str):
        source = source.encode("utf-8", "surrogatepass")
    if not isinstance(source, bytes | bytearray):
        return False
    return hashlib.sha256(source).hexdigest() in _trusted


def _tree(source: object, mode: str) -> ast.AST | None:
    if isinstance(source, bytes | bytearray):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
        return None
    try:
        return ast.parse(source, mode=mode)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def plain_annotation(source: object) -> bool:
    """A type expression typing may evaluate: no call, no lambda, nothing but names,
    attributes, subscripts, constants and `|`, and no name or attribute of the internals."""
    root = _tree(source, "eval")
    if root is None:
        return False
    for node in ast.walk(root):
        if not isinstance(node, _ANNOTATION_NODES) or _reaches_internals(node):
            return False
        if isinstance(node, ast.BinOp) and not isinstance(node.op, ast.BitOr):
            return False
    return True


def plain_generated(source: object) -> bool:
    """Methods dataclasses may have written: none of the forms that import, define hidden
    functions or reach the interpreter's internals."""
    root = _tree(source, "exec")
    if root is None:
        return False
    return not any(
        isinstance(node, _FORBIDDEN_NODES) or _reaches_internals(node) for node in ast.walk(root)
    )


def _reaches_internals(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _FORBIDDEN_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in _FORBIDDEN_ATTRS
    return False
