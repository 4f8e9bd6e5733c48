"""What a Hugging Face repository's files say, read on the host: bounded, validated JSON and the
syntax trees of its Python files. Nothing here imports, runs or deserialises a file of the
repository, and nothing raises on what a file holds: every failure is a problem string.

`describe_repo` fills the report's HfInfo: the model type and architectures config.json
names, the task they imply, the weight files (shards named by an index must lie inside the
repository and be there), whether tokenizer files are present, whether the repository ships its
own code (an `auto_map`), each .py file with its sha256 and the modules it imports, and a PEFT
adapter's base model.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.report import CodeFile, HfInfo
from runner.static.manifest import open_regular, sha256_file
from runner.worker.shared import tree

KIB, MIB = 1 << 10, 1 << 20
CONFIG_BYTES = 1 * MIB  # config.json, tokenizer_config.json, adapter_config.json
INDEX_BYTES = 16 * MIB  # a sharded model's index (a weight map of every tensor)
MAX_DEPTH = 32  # nesting of JSON arrays and objects
MAX_ELEMENTS = 1_000_000  # arrays, objects and commas in one JSON file
MAX_INT_DIGITS = 40
MAX_TEXT = 200  # characters kept of a string from a file
MAX_ITEMS = 64  # architectures, auto_map entries, problems listed
MAX_SHARDS = 10_000
MAX_CODE_FILES = 200
MAX_CODE_BYTES = 1 * MIB  # a .py file parsed for its imports
MAX_CODE_TOTAL = 8 * MIB  # all .py files parsed
MAX_CODE_HASHED = 64 * MIB  # a .py file hashed (the model's file digests have every file's)
MAX_IMPORTS = 200  # modules listed per code file
WALK_DEPTH, WALK_ENTRIES = 16, 20_000

WEIGHT_FILE = re.compile(
    r"^(model|pytorch_model|adapter_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)$"
)
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "special_tokens_map.json",
)
SENTENCE_TRANSFORMERS = ("modules.json", "config_sentence_transformers.json")
ADAPTER_TASKS = {
    "CAUSAL_LM": "causal-lm",
    "SEQ_CLS": "classification",
    "FEATURE_EXTRACTION": "embedding",
}


class _Refused(Exception):
    """A JSON value read_json does not accept (a duplicate key, NaN, a huge number)."""


# --- bounded JSON ---------------------------------------------------------------------------


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"duplicate key {text(k)!r}")
        out[k] = v
    return out


def _int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"a number of {len(s)} digits")
    return int(s)


def _float(s: str) -> float:
    if len(s) > 64:
        raise _Refused(f"a number of {len(s)} characters")
    f = float(s)
    if not math.isfinite(f):
        raise _Refused(f"a number out of range ({s[:20]})")
    return f


def _constant(s: str) -> Any:
    raise _Refused(f"{s} is not JSON")


def _read_bounded(path: Path, max_bytes: int) -> bytes | str:
    """The file's bytes, or why they were not read: only a regular file, never through a
    symlink, never more than max_bytes."""
    try:
        fd = open_regular(path, follow=False)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if len(data) > max_bytes:
        return f"larger than {max_bytes} bytes: not read"
    return data


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than max_depth (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack += [(c, depth + 1) for c in children if isinstance(c, dict | list)]
    return False


def read_json(
    path: Path, max_bytes: int = CONFIG_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, Any] | str:
    """A JSON object read from a regular file (not through a symlink) within the bounds; or a
    problem string saying why not. Never raises."""
    data = _read_bounded(path, max_bytes)
    if isinstance(data, str):
        return data
    return parse_json(data, max_depth)


def parse_json(data: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any] | str:
    """A JSON object from bytes, or a problem string: not UTF-8, not JSON, cut, too many
    elements, nested too deep, a duplicate key, NaN or Infinity, a huge number."""
    try:
        doc = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return f"not UTF-8 (at byte {e.start})"
    if doc.count(",") + doc.count("[") + doc.count("{") > MAX_ELEMENTS:
        return f"more than {MAX_ELEMENTS} elements: not parsed"
    try:
        value = json.loads(
            doc,
            object_pairs_hook=_pairs,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except _Refused as e:
        return f"refused: {e}"
    except json.JSONDecodeError as e:
        cut = " (cut short)" if e.pos >= len(doc.rstrip()) else ""
        return f"not valid JSON{cut}: {e.msg} at line {e.lineno} column {e.colno}"
    except (RecursionError, MemoryError, ValueError) as e:
        return f"could not be parsed ({type(e).__name__})"
    if not isinstance(value, dict):
        return f"not a JSON object (a {type(value).__name__})"
    if _too_deep(value, max_depth):
        return f"nested deeper than {max_depth} levels"
    return value


def text(value: object, limit: int = MAX_TEXT) -> str:
    """A string from a file as text that always encodes (lone surrogates replaced), cut."""
    s = value if isinstance(value, str) else ""
    s = s.encode("utf-8", "replace").decode("utf-8")
    return s if len(s) <= limit else s[: limit - 1] + "…"


# --- code files -----------------------------------------------------------------------------


def imports_of(source: bytes) -> list[str] | str:
    """The modules a Python source's import statements name (relative ones with their dots),
    and the constant names given to __import__ / importlib.import_module ('?' when the name is
    built at run time), read from the syntax tree; or why it could not be read. Never raises."""
    try:
        root = ast.parse(source)
    except SyntaxError as e:
        return f"does not parse: {text(e.msg, 80)} at line {e.lineno}"
    except (RecursionError, MemoryError, ValueError, OverflowError, LookupError) as e:
        return f"could not be parsed ({type(e).__name__})"
    except Exception as e:  # a codec the source's coding line names may raise anything
        return f"could not be parsed ({type(e).__name__})"
    found: set[str] = set()
    for node in ast.walk(root):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                found.add("." * node.level + node.module)
            else:  # from . import a: the package's module a, or a name of the package
                found.update("." * node.level + a.name for a in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            arg = node.args[0] if node.args else None
            const = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            found.add(arg.value if const else "?")  # type: ignore[union-attr]
    return sorted(text(m) for m in found)[:MAX_IMPORTS]


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr in ("__import__", "import_module")


def _code_file(entry: tree.Entry, budget: list[int]) -> CodeFile:
    """One .py file: its sha256 and imports; a file too large, over the total budget, or that
    cannot be read is listed with why (`budget`: bytes left to parse, spent here)."""
    rel = tree.shown(entry.rel)
    if entry.kind is not tree.Kind.FILE:
        return CodeFile(path=rel, sha256="", problem=f"a {entry.kind.value}: not followed")
    if entry.size > MAX_CODE_BYTES or entry.size > budget[0]:
        why = "larger than 1 MiB" if entry.size > MAX_CODE_BYTES else "past the 8 MiB read"
        if entry.size > MAX_CODE_HASHED:
            return CodeFile(path=rel, sha256="", problem=f"{why}: not read")
        try:
            digest = sha256_file(entry.path, follow=False)
        except OSError as e:
            return CodeFile(path=rel, sha256="", problem=f"cannot be read ({e.strerror})")
        return CodeFile(path=rel, sha256=digest, problem=f"{why}: its imports were not read")
    data = _read_bounded(entry.path, MAX_CODE_BYTES)
    if isinstance(data, str):
        return CodeFile(path=rel, sha256="", problem=data)
    budget[0] -= len(data)
    found = imports_of(data)
    digest = hashlib.sha256(data).hexdigest()
    if isinstance(found, str):
        return CodeFile(path=rel, sha256=digest, problem=found)
    return CodeFile(path=rel, sha256=digest, imports=found)


def code_files(root: Path, problems: list[str]) -> list[CodeFile]:
    """Each .py file under root (bounded walk and count, never following a symlink)."""
    try:
        walked = tree.scan(root, max_depth=WALK_DEPTH, max_entries=WALK_ENTRIES)
    except OSError as e:
        problems.append(f"the repository could not be walked ({e.strerror})")
        return []
    if not walked.complete:
        problems.append("the repository's tree was not walked whole: .py files beyond it unread")
    py = [
        e
        for e in walked.entries
        if e.rel.endswith(".py") and e.kind in (tree.Kind.FILE, tree.Kind.SYMLINK)
    ]
    if len(py) > MAX_CODE_FILES:
        problems.append(f"{len(py)} .py files: only the first {MAX_CODE_FILES} were read")
    budget = [MAX_CODE_TOTAL]
    return [_code_file(e, budget) for e in py[:MAX_CODE_FILES]]


# --- the repository -------------------------------------------------------------------------


def _json_file(root: Path, name: str, max_bytes: int, problems: list[str]) -> dict[str, Any]:
    """A repository JSON file as an object; {} (and a problem) when it cannot be read."""
    found = read_json(root / name, max_bytes)
    if isinstance(found, str):
        problems.append(f"{name}: {found}")
        return {}
    return found


def _strings(value: Any, where: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} is not a list of strings")
        return []
    return [text(v) for v in value[:MAX_ITEMS]]


def _auto_map(value: Any) -> list[str]:
    """The code files an auto_map names ('modeling_x.MyModel' is modeling_x.py; a value
    naming another repository keeps its 'org/name--' prefix); '?' for entries of no shape."""
    items = value.values() if isinstance(value, dict) else [value]
    refs: set[str] = set()
    for v in list(items)[:MAX_ITEMS]:
        for ref in v if isinstance(v, list) else [v]:
            if ref is None:  # a tokenizer's [slow, fast] pair may leave one out
                continue
            if not isinstance(ref, str) or "." not in ref:
                refs.add("?")
                continue
            repo, sep, ref_in = ref.rpartition("--")
            module = ref_in.rpartition(".")[0]
            refs.add(text(repo + sep + module.replace(".", "/") + ".py"))
    return sorted(refs)[:MAX_ITEMS] or ["?"]


CUSTOM_GENERATE = "custom_generate/generate.py"


def origin(where: str) -> str:
    """Where a repository's code is named: an auto_map in a JSON file, or a file transformers
    runs by its name."""
    return f"auto_map in {where}" if where.endswith(".json") else f"{where} (generate() runs it)"


def _remote_code(root: Path, docs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Where an auto_map is, and the code it names. A file that could not be parsed but may
    hold one (its bytes name auto_map, or escape characters) counts too: fail closed."""
    out: dict[str, list[str]] = {}
    for name, doc in docs.items():
        if "auto_map" in doc:
            out[name] = _auto_map(doc["auto_map"])
        elif not doc and os.path.lexists(root / name):
            raw = _read_bounded(root / name, INDEX_BYTES)
            if isinstance(raw, bytes) and (b"auto_map" in raw or b"\\u" in raw):
                out[name] = ["? (the file could not be read: it may name code)"]
    # transformers runs a repository's custom_generate/generate.py in place of generate()
    # when the repository's code is trusted: code of its own, with or without an auto_map
    if os.path.lexists(root / CUSTOM_GENERATE):
        out[CUSTOM_GENERATE] = [CUSTOM_GENERATE]
    return out


def _shard_problem(root: Path, real_root: str, name: object) -> str:
    """Why a weight_map entry is not a file inside the repository ('' when it is)."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        return f"{text(repr(name), 80)} is not a file name"
    if name.startswith("/"):
        return f"{text(name)!r} is an absolute path"
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        return f"{text(name)!r} points outside the repository"
    full = root / norm
    try:
        st = os.lstat(full)
    except OSError:
        return f"{text(name)!r} is not in the repository"
    if tree.kind_of(st.st_mode) is not tree.Kind.FILE:
        return f"{text(name)!r} is a {tree.kind_of(st.st_mode).value}, not a regular file"
    real = os.path.realpath(full)
    if os.path.commonpath([real, real_root]) != real_root:
        return f"{text(name)!r} resolves outside the repository"
    return ""


def _index(root: Path, name: str, problems: list[str], bad: list[str]) -> list[str]:
    """The shards an index names (inside the repository and present); what is wrong with the
    others goes to `bad`, an index that cannot be read to `problems`."""
    doc = _json_file(root, name, INDEX_BYTES, problems)
    if not doc:
        return []
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        problems.append(f"{name}: no weight_map object")
        return []
    values = list(weight_map.values())
    if not all(isinstance(v, str) for v in values):
        problems.append(f"{name}: a weight_map value is not a file name")
        return []
    names = set(values)
    if len(names) > MAX_SHARDS:
        problems.append(f"{name}: {len(names)} shards named, more than {MAX_SHARDS}: not checked")
        return []
    real_root = os.path.realpath(root)
    good = []
    for shard in sorted(names):
        why = _shard_problem(root, real_root, shard)
        if why:
            bad.append(f"{name}: weight_map entry {why}")
        else:
            good.append(posixpath.normpath(shard))
    return good


def _weights(root: Path, problems: list[str], bad: list[str]) -> list[str]:
    """Weight files at the repository's root and the shards its indexes name."""
    try:
        names = sorted(os.listdir(root))[:WALK_ENTRIES]
    except OSError as e:
        problems.append(f"the repository could not be listed ({e.strerror})")
        return []
    found = {n for n in names if WEIGHT_FILE.match(n) and os.path.isfile(root / n)}
    for index in INDEXES:
        if os.path.lexists(root / index):
            found.update(_index(root, index, problems, bad))
    return [text(n) for n in sorted(found)[:MAX_SHARDS]]


def _adapter(doc: dict[str, Any]) -> dict[str, str]:
    keys = ("peft_type", "base_model_name_or_path", "task_type")
    return {k: text(doc[k]) for k in keys if isinstance(doc.get(k), str)}


def _task(root: Path, architectures: list[str], adapter: dict[str, str]) -> str:
    """What the model computes, from its first architecture's name (as transformers picks it)."""
    arch = architectures[0] if architectures else ""
    if arch.endswith("ForSequenceClassification"):
        return "classification"
    if arch.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal-lm"
    if arch.endswith("Model") or any(os.path.lexists(root / n) for n in SENTENCE_TRANSFORMERS):
        return "embedding"
    if not arch and adapter.get("task_type") in ADAPTER_TASKS:
        return ADAPTER_TASKS[adapter["task_type"]]
    return "hidden-states"


def _listed(items: list[str]) -> list[str]:
    if len(items) <= MAX_ITEMS:
        return items
    return [*items[: MAX_ITEMS - 1], f"... and {len(items) - MAX_ITEMS + 1} more"]


def describe_repo(path: Path, repo_id: str = "", revision: str = "") -> HfInfo | None:
    """What the repository at `path` is, read as bounded JSON and syntax trees; None when it
    is not a Hugging Face repository (a directory with config.json or adapter_config.json).
    `repo_id` and `revision` name it when it came from the cache (runner.hf.cache)."""
    try:
        if not path.is_dir():
            return None
    except OSError:
        return None
    has = {n: os.path.lexists(path / n) for n in ("config.json", "adapter_config.json")}
    if not any(has.values()):
        return None
    problems: list[str] = []
    docs = {
        n: _json_file(path, n, CONFIG_BYTES, problems) if os.path.lexists(path / n) else {}
        for n in ("config.json", "tokenizer_config.json", "adapter_config.json")
    }
    config = docs["config.json"]
    architectures = _strings(config.get("architectures"), "config.json: architectures", problems)
    model_type = config.get("model_type", "")
    if not isinstance(model_type, str):
        problems.append("config.json: model_type is not a string")
    adapter = _adapter(docs["adapter_config.json"])
    auto_map = _remote_code(path, {n: docs[n] for n in ("config.json", "tokenizer_config.json")})
    bad: list[str] = []
    weights = _weights(path, problems, bad)
    return HfInfo(
        repo_id=repo_id,
        revision=revision,
        model_type=text(model_type, 100),
        architectures=architectures,
        task=_task(path, architectures, adapter),
        weights=weights,
        tokenizer=any(os.path.lexists(path / n) for n in TOKENIZER_FILES),
        remote_code=bool(auto_map),
        auto_map=auto_map,
        code_files=code_files(path, problems),
        adapter=adapter,
        problems=_listed(problems),
        index_problems=_listed(bad),
    )


TRUST_HINT = (
    "pass --trust-remote-code to run it in the sandbox, or use `airlock scan` to see what it does"
)


def require_trust(info: HfInfo | None, name: str, trusted: bool) -> None:
    """Refuse, before any sandbox starts, a repository that ships its own code unless its code
    may run (transformers asks the same: trust_remote_code)."""
    if info is None or not info.remote_code or trusted:
        return
    where = "; ".join(f"{origin(f)}: {', '.join(c)}" for f, c in info.auto_map.items())
    raise UsageError(f"{name} ships its own code ({where})", TRUST_HINT)
