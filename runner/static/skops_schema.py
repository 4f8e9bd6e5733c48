"""skops archives read on the host, by bytes only: the types schema.json names.

A skops archive is a zip of schema.json (a tree of nodes, each naming its loader, module and
class) and the .npy arrays it refers to. skops.io.load builds what the tree names, and
skops.io.get_untrusted_types lists the types its loaders do not trust by default (what a user
must pass as trusted=). The host reads schema.json under a size bound, walks its tree
iteratively under a node bound, and reports:

- every type a node names, as a pickle import (runner.rules.pickle_globals judges each by its
  full dotted path, as the static pickle read does; a MethodNode's method is part of the path);
- AL942 (low) for the types skops would not trust by default (each loader's default, from the
  pinned skops: runner.rules.skops_trusted), so the list a user is asked to trust is shown;
- AL941 for a schema that is missing, over its bound, not JSON, or nests past the bounds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.static.signs import Signs

MAX_SCHEMA_BYTES = 64 << 20
MAX_NODES = 1_000_000
MAX_NESTING = 10_000  # json.loads recursion (raised to this for the read)
MAX_SHOWN = 20
SAFE_LOADERS = frozenset(("JsonNode",))  # json.loads of its content: skops trusts it always


def examine(primary: Path) -> Signs:
    from runner.static.pickles import Import
    from runner.static.signs import Signs

    out = Signs()
    try:
        schema = _schema(primary)
    except ValueError as e:
        _finding(out, "ARRAY_HEADER_MALFORMED", f"the skops schema could not be read: {e}")
        return out
    types, untrusted, cut = walk(schema)
    out.imports = [Import(m, n, "schema.json") for m, n in types]
    if untrusted:
        shown = ", ".join(sorted(untrusted)[:MAX_SHOWN])
        more = f" and {len(untrusted) - MAX_SHOWN} more" if len(untrusted) > MAX_SHOWN else ""
        why = f"the archive names {len(untrusted)} type(s) skops does not trust by default: "
        _finding(out, "SKOPS_UNTRUSTED_TYPE", why + shown + more)
    if cut:
        _finding(out, "ARRAY_HEADER_MALFORMED", f"the skops schema's tree {cut}: the rest not read")
    return out


def _finding(out: Signs, kind: str, why: str) -> None:
    from runner.errors import untrusted_text
    from runner.static.tamper import Tamper, TamperKind

    out.tamper.append(Tamper(TamperKind[kind], untrusted_text(why, 600)))


def _schema(path: Path) -> Any:
    import sys

    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("schema.json")
            if info.file_size > MAX_SCHEMA_BYTES:
                raise ValueError(f"schema.json is {info.file_size} bytes, over the bound")
            with zf.open(info) as f:
                raw = f.read(MAX_SCHEMA_BYTES + 1)
    except KeyError as e:
        raise ValueError("no schema.json in the archive") from e
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as e:
        raise ValueError(f"{type(e).__name__}: {str(e)[:120]}") from e
    if len(raw) > MAX_SCHEMA_BYTES:
        raise ValueError("schema.json inflates past its bound")
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, MAX_NESTING + 100))
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"schema.json is not JSON ({type(e).__name__})") from e
    finally:
        sys.setrecursionlimit(limit)


def walk(schema: Any) -> tuple[list[tuple[str, str]], set[str], str]:
    """(module, name) of every type the tree names, those skops would not trust by default
    (dotted), and why the walk stopped early ("" when it did not)."""
    from runner.rules.skops_trusted import SKOPS_TRUSTED

    types: dict[tuple[str, str], None] = {}
    untrusted: set[str] = set()
    todo, seen = [schema], 0
    while todo:
        node = todo.pop()
        seen += 1
        if seen > MAX_NODES:
            return list(types), untrusted, f"holds more than {MAX_NODES} values"
        if isinstance(node, list):
            todo.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        todo.extend(v for k, v in node.items() if k not in ("__module__", "__class__"))
        loader, module, name = (node.get(k) for k in ("__loader__", "__module__", "__class__"))
        if not isinstance(loader, str) or loader in SAFE_LOADERS:
            continue
        module = module if isinstance(module, str) else "?"
        name = name if isinstance(name, str) else "?"
        if loader == "MethodNode":
            content = node.get("content")
            func = content.get("func") if isinstance(content, dict) else None
            dotted = f"{name}.{func if isinstance(func, str) else '?'}"
            types.setdefault((module, dotted), None)
            untrusted.add(f"{module}.{dotted}")
        types.setdefault((module, name), None)
        if f"{module}.{name}" not in SKOPS_TRUSTED.get(loader, frozenset()):
            untrusted.add(f"{module}.{name}")
    return list(types), untrusted, ""
