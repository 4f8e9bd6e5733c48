"""The layout holds: the worker and the host meet only at runner.worker.shared, modules stay
small, and long functions say why they are long.

The import checks are allow-lists read from the source (every import statement, at any depth),
so a new dependency of the worker has to be added here on purpose.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runner"
GENERATED = "_proto"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
LONG_REASON = "# long function:"  # a comment in a longer function, saying why

# What code that runs in the container may import beyond the standard library: the wire
# format's libraries and the loaders' frameworks (imported inside the loader that needs them).
WORKER_THIRD_PARTY = {
    "numpy",
    "grpc",
    "google",
    "onnxruntime",
    "torch",
    "safetensors",
    "transformers",
    "tokenizers",
    # the other formats' libraries (the default image; tensorflow in its own image)
    "sklearn",
    "joblib",
    "skops",
    "keras",
    "h5py",
    "gguf",
    "xllamacpp",
    "jinja2",
    "ai_edge_litert",
    "tensorflow",
}
# What the shared pieces (used by the host too) may import beyond the standard library.
SHARED_THIRD_PARTY = {"numpy", "grpc", "google"}


def _sources(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if GENERATED not in p.parts)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every module an import statement in the file names, made absolute."""
    tree = ast.parse(path.read_text())
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.append(node.module or "")
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_worker_imports_only_the_worker_and_its_libraries() -> None:
    bad = []
    for path in _sources(PACKAGE / "worker"):
        shared = "shared" in path.relative_to(PACKAGE / "worker").parts
        allowed = SHARED_THIRD_PARTY if shared else WORKER_THIRD_PARTY
        own = "runner.worker.shared" if shared else "runner.worker"
        for name in _imports(path):
            if name == "__future__" or _top(name) in sys.stdlib_module_names:
                continue
            if name == own or name.startswith(own + "."):
                continue
            if _top(name) not in allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_the_host_imports_only_the_workers_shared_pieces() -> None:
    bad = []
    for path in _sources(PACKAGE):
        if (PACKAGE / "worker") in path.parents:
            continue
        for name in _imports(path):
            if name.startswith("runner.worker") and not (
                name == "runner.worker.shared" or name.startswith("runner.worker.shared.")
            ):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_the_allow_lists_see_real_imports() -> None:
    """The checks above read what they should: a worker module and a host module that are known
    to import the shared pieces are seen doing so."""
    assert "runner.worker.shared" in _imports(PACKAGE / "worker" / "server.py")
    assert any(
        n.startswith("runner.worker.shared") for n in _imports(PACKAGE / "channel" / "client.py")
    )


def _module_level_imports(path: Path, known: set[str]) -> set[str]:
    """The Airlock modules a module imports when it is imported (function-level imports and
    TYPE_CHECKING blocks excluded), as module names."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m in known and m != me}


def test_modules_import_each_other_without_cycles() -> None:
    paths = {_module(p): p for p in _sources(PACKAGE)}
    graph = {m: _module_level_imports(p, set(paths)) for m, p in paths.items()}
    assert graph["runner.controller.sandbox"]  # the graph is read, not empty
    for base in ("runner.errors", "runner.policy"):
        assert graph[base] == set(), f"{base} imports {graph[base]}"
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*path[path.index(n) :], n]))
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("path", _sources(PACKAGE), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_long_functions_say_why() -> None:
    long = []
    for path in _sources(PACKAGE):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            body = lines[node.lineno - 1 : node.end_lineno]
            if len(body) > MAX_FUNCTION_LINES and not any(LONG_REASON in b for b in body):
                long.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(body)} lines)"
                )
    assert long == []
