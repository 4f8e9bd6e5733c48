"""torch.package archives, read on the host without importing anything from them.

A torch.package archive (`torch.package.PackageExporter`) is a zip holding `.data/version`,
`.data/extern_modules`, pickles, and the Python source of the modules it packages; loading it
(`PackageImporter`) runs that source. Here the source is only parsed (`ast.parse` of a bounded
read, never compiled to bytecode, never run) and its imports and uses are listed: `import x`,
`from x import y`, `__import__("x")`, `importlib.import_module("x")`, `getattr(module, "y")`
and attribute uses of imported modules (`os.system`). Names that reach processes, the network
or native code are dangerous; imports of computed names and dynamic code (`eval`, `exec`,
`compile`, `__import__(expr)`) are hidden. Code that cannot be read (too large, not Python the
host can parse, too many files) is said, never skipped in silence.
"""

from __future__ import annotations

import ast
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import untrusted_text

MAX_CODE_FILES = 2_000
MAX_SOURCE_BYTES = 1 << 20  # of one code file
MAX_TOTAL_SOURCE = 16 << 20
MAX_PICKLE_BYTES = 64 << 20  # a packaged pickle read for its imports
MAX_PROBED = 10_000  # other members looked at (are they pickles?)
MAX_USES = 50  # dangerous or hidden uses recorded of one archive
MAX_NODES = 2_000_000  # AST nodes visited of one archive

DANGEROUS_MODULES = frozenset(
    {
        *("subprocess", "_posixsubprocess", "pty", "posix", "nt", "socket", "socketserver"),
        *("ssl", "ctypes", "cffi", "_ctypes", "runpy", "multiprocessing", "webbrowser"),
        *("marshal", "code", "codeop", "pdb", "urllib.request", "http.client", "requests"),
        *("ftplib", "smtplib", "telnetlib", "paramiko", "asyncio.subprocess", "pickle"),
        *("_pickle", "dill", "shelve"),
    }
)
DANGEROUS_NAMES = frozenset(
    {
        *("os.system", "os.popen", "os.fork", "os.forkpty", "os.kill", "os.killpg"),
        *("os.posix_spawn", "os.posix_spawnp", "os.putenv", "os.setuid", "os.setgid"),
        *("os.execv", "os.execve", "os.execl", "os.execle", "os.execlp", "os.execlpe"),
        *("os.execvp", "os.execvpe", "os.spawnv", "os.spawnve", "os.spawnl", "os.spawnle"),
        *("os.spawnlp", "os.spawnlpe", "os.spawnvp", "os.spawnvpe", "shutil.rmtree"),
        *("sys.settrace", "sys.setprofile", "sys._current_frames", "gc.get_objects"),
        *("gc.get_referrers", "gc.get_referents", "torch.hub.load", "platform.popen"),
    }
)
DYNAMIC_NAMES = frozenset(
    {
        *("builtins.eval", "builtins.exec", "builtins.compile", "builtins.__import__"),
        *("sys.modules", "builtins.__dict__"),
    }
)
_BUILTINS = {"eval", "exec", "compile", "__import__", "getattr"}
COMPUTED = "<computed>"  # a name the code computes at run time
_IMPORTERS = ("builtins.__import__", "importlib.import_module", "importlib.__import__")


@dataclass(frozen=True)
class Use:
    """A dangerous or hidden name the code reaches, where it does."""

    file: str
    line: int
    how: str  # "imports", "calls", "uses", ...
    name: str  # dotted, e.g. "os.system"; ending in COMPUTED when computed at run time
    dangerous: bool  # False: hidden (computed, or dynamic code)

    def evidence(self) -> str:
        where = untrusted_text(f"{self.file}:{self.line}", 160)
        return f"{where} {self.how} {untrusted_text(self.name, 120)}"


@dataclass
class Package:
    """What the host read of a torch.package archive."""

    root: str = ""  # the archive's top folder
    code_files: list[str] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)  # the packaged modules' dotted names
    pickles: list[str] = field(default_factory=list)  # members that hold a pickle
    uses: list[Use] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # why some code was not read
    nodes: int = 0


def is_package(names: list[str]) -> bool:
    """A torch.package archive: `.data/version` and `.data/extern_modules` under its root."""
    return any(n.endswith("/.data/extern_modules") for n in names) and any(
        n.endswith("/.data/version") for n in names
    )


def module_name(rel: str) -> str:
    """The dotted module a code file (relative to the archive's root) defines."""
    parts = rel[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def packaged(module: str, modules: set[str]) -> bool:
    """Whether `module` (or a package above it) is one of the archive's own modules."""
    parts = module.split(".")
    return any(".".join(parts[:i]) in modules for i in range(len(parts), 0, -1))


def read(path: Path) -> Package:
    """List a torch.package archive's code and pickles and read its code's uses. OSError and
    zipfile errors are the caller's."""
    pkg = Package()
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        marker = next((i.filename for i in infos if i.filename.endswith("/.data/version")), "")
        pkg.root = marker[: -len(".data/version")]
        total = probed = 0
        for info in infos:
            rel = info.filename[len(pkg.root) :]
            if not info.filename.startswith(pkg.root) or rel.startswith(".data/"):
                continue
            if rel.endswith(".py"):
                total += _read_code(zf, info, rel, pkg, total)
                continue
            probed += 1
            if probed > MAX_PROBED:
                _unread(pkg, f"more than {MAX_PROBED} other members; the rest were not examined")
            elif _is_pickle(zf, info):
                pkg.pickles.append(info.filename)
    return pkg


def _read_code(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, rel: str, pkg: Package, total: int
) -> int:
    """Read one code file into `pkg`; the bytes of source it read."""
    pkg.modules.add(module_name(rel))
    if len(pkg.code_files) >= MAX_CODE_FILES:
        _unread(pkg, f"more than {MAX_CODE_FILES} code files; the rest were not read")
        return 0
    pkg.code_files.append(info.filename)
    if info.file_size > MAX_SOURCE_BYTES or total + info.file_size > MAX_TOTAL_SOURCE:
        _unread(pkg, f"{info.filename}: {info.file_size} bytes, more than the host reads")
        return 0
    with zf.open(info) as member:
        source = member.read(MAX_SOURCE_BYTES + 1)
    if len(source) > MAX_SOURCE_BYTES:
        _unread(pkg, f"{info.filename}: more than {MAX_SOURCE_BYTES} bytes once inflated")
        return 0
    uses, error, nodes = code_uses(source, info.filename, MAX_NODES - pkg.nodes)
    pkg.nodes += nodes
    pkg.uses += uses[: MAX_USES - len(pkg.uses)]
    if error:
        _unread(pkg, f"{info.filename}: {error}")
    return len(source)


def _unread(pkg: Package, why: str) -> None:
    if len(pkg.unread) < 10 and untrusted_text(why, 200) not in pkg.unread:
        pkg.unread.append(untrusted_text(why, 200))


def _is_pickle(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    with zf.open(info) as member:
        head = member.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# --- the code's uses, from its syntax tree ---------------------------------------------------


def code_uses(source: bytes, file: str, max_nodes: int = MAX_NODES) -> tuple[list[Use], str, int]:
    """(dangerous and hidden uses, why the code could not be read or '', nodes visited) of one
    code file. Never raises: what cannot be parsed is the error."""
    try:
        tree = ast.parse(source, filename="<package>")
    except (SyntaxError, ValueError, RecursionError, MemoryError, LookupError, TypeError) as e:
        return [], f"not Python the host can parse ({type(e).__name__})", 0
    reader = _Reader(file)
    nodes = 0
    for visit in (reader.imports, reader.uses_of):  # every import binds before any use is read
        for node in _walk(tree):
            nodes += 1
            if nodes > max_nodes:
                return (
                    reader.uses,
                    f"more than {max_nodes} syntax nodes; the rest was not read",
                    nodes,
                )
            visit(node)
            if len(reader.uses) >= MAX_USES:
                return reader.uses, "", nodes
    return reader.uses, "", nodes


def _walk(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, depth first, without recursion (a deep tree cannot exhaust the stack)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(ast.iter_child_nodes(node))


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.uses: list[Use] = []
        self.aliases: dict[str, str] = {}  # a local name -> the dotted name it was bound to
        self.seen: set[tuple[str, str]] = set()

    def found(self, node: ast.AST, how: str, name: str) -> None:
        line = getattr(node, "lineno", 0)
        if (how, name) in self.seen:
            return  # each use once per file, where it first appears
        self.seen.add((how, name))
        if name.endswith(COMPUTED) or name in DYNAMIC_NAMES:
            self.uses.append(Use(self.file, line, how, name, dangerous=False))
        elif _dangerous(name):
            self.uses.append(Use(self.file, line, how, name, dangerous=True))

    def imports(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]  # `import os.path` binds os
                self.aliases[a.asname or top] = a.name if a.asname else top
                self.found(node, "imports", a.name)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for a in node.names:
                full = node.module if a.name == "*" else f"{node.module}.{a.name}"
                self.aliases[a.asname or a.name] = full
                self.found(node, "imports", full)

    def uses_of(self, node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, ast.Attribute):
            name = self.dotted(node)
            if name is not None:
                self.found(node, "uses", name)

    def _call(self, node: ast.Call) -> None:
        func = self.dotted(node.func)
        if func in _IMPORTERS:
            target = _literal(node.args[0]) if node.args else None
            self.found(node, "imports", target if target is not None else COMPUTED)
            if target is None:
                return
        elif func == "builtins.getattr" and len(node.args) >= 2:
            base = self.dotted(node.args[0])
            attr = _literal(node.args[1])
            if base is not None:
                self.found(node, "looks up", f"{base}.{attr if attr is not None else COMPUTED}")
        if func in ("builtins.eval", "builtins.exec", "builtins.compile"):
            self.found(node, "calls", func)

    def dotted(self, node: ast.expr) -> str | None:
        """The dotted name an expression reaches through imported names, if it does."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute) and len(attrs) < 32:
            attrs.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            base = self.aliases.get(node.id)
            if base is None and node.id in _BUILTINS:
                base = f"builtins.{node.id}"
            if base is None and node.id == "__builtins__":
                base = "builtins"
        elif isinstance(node, ast.Call) and self._name(node.func) in _IMPORTERS:
            base = _literal(node.args[0]) if node.args else None  # __import__("os").system
        else:
            return None
        return ".".join([base, *reversed(attrs)]) if base is not None else None

    def _name(self, node: ast.expr) -> str | None:
        """A plain or one-attribute name (`__import__`, `importlib.import_module`), resolved."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, f"builtins.{node.id}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = self.aliases.get(node.value.id)
            return f"{base}.{node.attr}" if base is not None else None
        return None


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _dangerous(name: str) -> bool:
    parts = name.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return bool(prefixes & DANGEROUS_MODULES or prefixes & DANGEROUS_NAMES)
