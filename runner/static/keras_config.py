"""Keras configs read on the host: a .keras archive's config.json, a legacy .h5 file's
model_config (and training_config) root attribute, read by bytes (runner.static.hdf5_attrs).

Keras builds a model from its config by name: every object is a class_name, with a module and
a registered_name, or a function named by its module and name. Loaded as a user who trusts the
file loads it (safe_mode=False), a Lambda layer's marshalled bytecode runs, a TorchModuleWrapper
unpickles its torch module, and older Keras (before 3.9) imports whatever module a config names
(CVE-2025-1550); even the current one calls Keras's own non-modelling functions a config names
(the shape of CVE-2025-8747 and CVE-2025-9906). So every name is judged, wherever in the config
it sits, not only in the places Keras's own schema puts it:

- AL950: a Lambda layer, with its function's kind (bytecode: the names it holds; a named
  function: its name); AL953 too when its bytecode names os, subprocess, eval and the like;
- AL951: a module/class/function outside Keras's modelling packages, or no importable name;
- AL953: a name that passes through a module or function that runs code (judged as pickle
  globals are), or a Keras utility that loads, fetches or unlocks;
- AL954: a TorchModuleWrapper's pickled module (its pickle's imports are judged as any
  pickle's: Signs.imports);
- AL952: whatever could not be read (fail closed): no config, too large, not JSON, too deep or
  too large to walk, or stored where the host does not read it.

Every read is bounded (the config's bytes, the walk's depth and nodes, the findings kept); the
JSON is parsed keeping every duplicate key, so a decoy value cannot hide the one Keras reads.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import untrusted_text
from runner.rules.catalog import Severity
from runner.rules.pickle_globals import judge_global
from runner.static import hdf5_attrs
from runner.static.pickles import Import, imports_in_bytes
from runner.static.signs import Signs
from runner.static.tamper import Tamper, TamperKind

MAX_CONFIG_BYTES = 32 << 20
MAX_DEPTH = 256  # nesting of the config's objects and lists
MAX_NODES = 2_000_000  # objects, lists and values walked of one config
MAX_FOUND = 40  # findings of one kind kept (then a count)
MAX_BLOB_BYTES = 64 << 20  # a TorchModuleWrapper's decoded torch.save stream
MAX_CODE_BYTES = 4 << 20  # a Lambda's bytecode, decoded for its names
H5_ATTRIBUTES = ("model_config", "training_config")
KERAS_ROOTS = {"keras", "keras_hub", "keras_nlp", "keras_cv", "tf_keras"}
# Keras's modelling packages: a name under one of them is a layer, model, op and the like.
MODELLING = {
    *("layers", "models", "ops", "activations", "initializers", "losses", "metrics"),
    *("optimizers", "regularizers", "constraints", "random", "dtype_policies", "quantizers"),
    *("mixed_precision", "backend", "trainers", "saving", "engine", "schedules", "tree"),
}
# Keras functions that are no modelling code: they load, fetch, write, unlock or reconfigure
# (keras.src.saving.serialization_lib.NON_MODELING_APIS and what it leaves out).
KERAS_DANGEROUS = {
    *("get_file", "enable_unsafe_deserialization", "load_model", "model_from_json"),
    *("model_from_yaml", "model_from_config", "load_weights", "save_model", "save_weights"),
    *("load_data", "get_word_index", "get_label_names", "load_img", "save_img", "plot_model"),
    *("model_to_dot", "set_backend", "clear_session", "deserialize_keras_object"),
    *("serialize_keras_object", "register_keras_serializable", "func_load", "load_batch"),
    *("image_dataset_from_directory", "text_dataset_from_directory", "set_global_attribute"),
    *("audio_dataset_from_directory", "clone_model", "load_module"),
}
KERAS_SKIP = {"src", "api", "_api", "_legacy", "legacy", "_tf_keras", "v1", "v2"}
_SHORT, _LONG = frozenset(b"zZ"), frozenset(b"aAut")  # marshal's string type bytes
_PRINTABLE = re.compile(rb"[ -~]+")


@dataclass
class _Found:
    out: Signs
    where: str
    counts: dict[TamperKind, int]
    nodes: int = 0
    layer: str = ""  # the name of the object being judged, or of the nearest one around it
    seen: set[str] = field(default_factory=set)

    def add(self, kind: TamperKind, evidence: str) -> None:
        at = f"{self.where}, in {self.layer!r}" if self.layer else self.where
        text = untrusted_text(f"{at}: {evidence}", 400)
        if text in self.seen:
            return
        self.seen.add(text)
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        if n < MAX_FOUND:
            self.out.tamper.append(Tamper(kind, text))


def examine(primary: Path) -> Signs:
    """The findings of the Keras config(s) of a .keras archive or an HDF5 file; never raises
    for a hostile file (what it cannot read is AL952)."""
    out = Signs()
    counts: dict[TamperKind, int] = {}
    try:
        texts = list(_configs(primary))
    except (hdf5_attrs.Unreadable, OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        texts = []
        _Found(out, primary.name, counts).add(TamperKind.KERAS_CONFIG_UNREADABLE, str(e))
    except (NotImplementedError, RuntimeError, OverflowError, MemoryError) as e:
        texts = []
        why = f"{type(e).__name__}: {e}"
        _Found(out, primary.name, counts).add(TamperKind.KERAS_CONFIG_UNREADABLE, why)
    for where, raw in texts:
        found = _Found(out, where, counts)
        tree = _parse(raw, found)
        if tree is not None:
            _walk(tree, found)
    for kind, n in counts.items():
        if n > MAX_FOUND:
            out.tamper.append(Tamper(kind, f"{n - MAX_FOUND} more like these (not shown)"))
    return out


# --- where the config is ------------------------------------------------------------------------


def _configs(primary: Path) -> Iterator[tuple[str, bytes]]:
    with primary.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        yield from _zip_configs(primary)
    elif head == hdf5_attrs.SIGNATURE:
        yield from _h5_configs(primary)
    else:
        raise ValueError("neither a .keras archive nor an HDF5 file")


def _zip_configs(primary: Path) -> Iterator[tuple[str, bytes]]:
    """Every member named config.json (Keras reads the last of the same name: all are read)."""
    with zipfile.ZipFile(primary) as zf:
        members = [i for i in zf.infolist() if i.filename == "config.json"]
        if not members:
            raise ValueError("the archive has no config.json (what Keras would build is unknown)")
        for n, info in enumerate(members):
            if info.file_size > MAX_CONFIG_BYTES:
                raise ValueError(
                    f"config.json of {info.file_size} bytes (more than {MAX_CONFIG_BYTES} read)"
                )
            with zf.open(info) as member:
                raw = member.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ValueError(f"config.json inflates past {MAX_CONFIG_BYTES} bytes")
            yield ("config.json" if len(members) == 1 else f"config.json (copy {n + 1})"), raw


def _h5_configs(primary: Path) -> Iterator[tuple[str, bytes]]:
    found = {name: hdf5_attrs.root_attribute(primary, name) for name in H5_ATTRIBUTES}
    if not found["model_config"].values:
        names = ", ".join(found["model_config"].names[:10]) or "none"
        raise hdf5_attrs.Unreadable(
            f"no model_config attribute on the root group (its attributes: {names})"
        )
    for name, attr in found.items():
        for n, value in enumerate(attr.values):
            yield (name if len(attr.values) == 1 else f"{name} (copy {n + 1})"), value


# --- parsing and walking ---------------------------------------------------------------------


class _Pairs(list[tuple[str, object]]):
    """A JSON object with every key it has, duplicates included, in order."""

    def last(self) -> dict[str, object]:
        return dict(self)


def _parse(raw: bytes, found: _Found) -> object:
    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=_Pairs)
    except UnicodeDecodeError:
        found.add(TamperKind.KERAS_CONFIG_UNREADABLE, "the config is not UTF-8 text")
    except RecursionError:
        found.add(TamperKind.KERAS_CONFIG_UNREADABLE, "the config nests too deep to parse")
    except ValueError as e:
        found.add(TamperKind.KERAS_CONFIG_UNREADABLE, f"the config is not JSON ({e})")
    return None


def _walk(tree: object, found: _Found) -> None:
    """Every object of the config, iteratively, within MAX_DEPTH and MAX_NODES."""
    stack: list[tuple[object, int, bool, str]] = [(tree, 0, False, "")]
    while stack:
        node, depth, wrapped, layer = stack.pop()
        found.nodes += 1
        if found.nodes > MAX_NODES:
            why = f"the config has more than {MAX_NODES} values: the rest was not walked"
            found.add(TamperKind.KERAS_CONFIG_UNREADABLE, why)
            return
        if depth > MAX_DEPTH:
            why = f"the config nests deeper than {MAX_DEPTH}: below that it was not walked"
            found.add(TamperKind.KERAS_CONFIG_UNREADABLE, why)
            return
        if isinstance(node, _Pairs):
            found.layer = layer = _layer_name(node) or layer
            inner = _object(node, found, wrapped)
            stack += [(v, depth + 1, id(v) == inner, layer) for _, v in reversed(node)]
        elif isinstance(node, list):
            stack += [(v, depth + 1, False, layer) for v in reversed(node)]


def _layer_name(pairs: _Pairs) -> str:
    """The name an object with a class gives itself in its config (a layer's, a model's)."""
    last = pairs.last()
    config = last.get("config")
    if "class_name" in last and isinstance(config, _Pairs):
        name = config.last().get("name")
        return name[:80] if isinstance(name, str) else ""
    return ""


def _object(pairs: _Pairs, found: _Found, wrapped: bool) -> int:
    """Judge one object's names; returns the id of a TorchModuleWrapper's inner config (whose
    "module" is the pickled module, not a module name), else 0."""
    inner = 0
    for key, value in pairs:
        if key == "module" and isinstance(value, str) and not wrapped:
            for other, name in pairs:
                if other == "class_name" and isinstance(name, str):
                    _name(value, _function_name(pairs, name), found)
        elif key == "fn" and isinstance(value, str) and ("." in value or ":" in value):
            _name(*_split(value), found)
        elif key == "class_name" and isinstance(value, str):
            if "." in value:
                _name(*_split(value), found)
            if value == "__lambda__":
                _bytecode("a serialized Python lambda", pairs, found)
            elif value == "Lambda":
                _lambda(pairs.last(), found)
            elif value == "TorchModuleWrapper":
                config = pairs.last().get("config")
                if isinstance(config, _Pairs):
                    _pickled_module(config, found)
                    inner = id(config)
    return inner


def _function_name(pairs: _Pairs, class_name: str) -> str:
    if class_name == "function":
        config = pairs.last().get("config")
        return config if isinstance(config, str) else "?"
    return class_name


def _split(dotted: str) -> tuple[str, str]:
    module, _, name = dotted.replace(":", ".").rpartition(".")
    return module, name


def _name(module: str, name: str, found: _Found) -> None:
    """Judge module + name as Keras would resolve it (older Keras imports any module)."""
    shown = untrusted_text(f"{module}.{name}", 160)
    segments = [s for s in f"{module}.{name}".split(".")]
    if not module or not all(s.isidentifier() for s in segments):
        why = f"names {shown!r}, which is no importable module and name"
        found.add(TamperKind.KERAS_FOREIGN_FUNCTION, why)
        return
    root = segments[0]
    if root == "builtins":
        j = judge_global(module, name)
        if j.severity is Severity.CRITICAL:
            found.add(TamperKind.KERAS_DANGEROUS_FUNCTION, f"names {j.path} ({j.why})")
        return  # Keras looks a builtins function up among its own activations, losses, ...
    j = judge_global(module, name)
    if j.severity is Severity.CRITICAL:
        found.add(TamperKind.KERAS_DANGEROUS_FUNCTION, f"names {j.path} ({j.why})")
        return
    if root not in KERAS_ROOTS:
        found.add(TamperKind.KERAS_FOREIGN_FUNCTION, f"names {shown}, outside Keras")
        return
    hit = [s for s in segments if s in KERAS_DANGEROUS]
    if hit:
        why = f"names {shown}: Keras's {hit[0]} is no modelling code (it loads, fetches or unlocks)"
        found.add(TamperKind.KERAS_DANGEROUS_FUNCTION, why)
        return
    if root == "keras":
        rest = [s for s in segments[1:-1] if s not in KERAS_SKIP]
        if rest and rest[0] not in MODELLING:
            why = f"names {shown}: keras.{rest[0]} is no modelling package"
            found.add(TamperKind.KERAS_FOREIGN_FUNCTION, why)


def _lambda(layer: dict[str, object], found: _Found) -> None:
    config = layer.get("config")
    config = config.last() if isinstance(config, _Pairs) else {}
    fn = config.get("function")
    name = untrusted_text(str(config.get("name", "?")), 80)
    if isinstance(fn, _Pairs) and fn.last().get("class_name") == "__lambda__":
        return  # the __lambda__ object itself is judged where it sits
    if (isinstance(fn, list) and not isinstance(fn, _Pairs)) or (
        isinstance(fn, _Pairs) and fn.last().get("class_name") == "__tuple__"
    ):
        items = fn if isinstance(fn, list) else fn.last().get("items")
        code = items[0] if isinstance(items, list) and items else None
        _bytecode(f"the Lambda layer {name!r}", _Pairs([("code", code)]), found, legacy=True)
    elif isinstance(fn, str):
        module = config.get("module")
        kind = config.get("function_type")
        dotted = f"{module}.{fn}" if isinstance(module, str) and module else fn
        if kind == "lambda":  # legacy Keras: the string is the marshalled code itself
            _bytecode(f"the Lambda layer {name!r}", _Pairs([("code", fn)]), found, legacy=True)
            return
        found.add(
            TamperKind.KERAS_LAMBDA,
            f"the Lambda layer {name!r} calls the named function {untrusted_text(dotted, 120)}",
        )
        if isinstance(module, str) and module:
            _name(module, fn, found)
    elif isinstance(fn, _Pairs):
        f = fn.last()
        called = f.get("config") if f.get("class_name") == "function" else f.get("class_name")
        named = f"{f.get('module')}.{called}"
        why = f"the Lambda layer {name!r} calls the named function {untrusted_text(named, 120)}"
        found.add(TamperKind.KERAS_LAMBDA, why)
    else:
        found.add(
            TamperKind.KERAS_LAMBDA, f"the Lambda layer {name!r} has a function of no known shape"
        )


def _bytecode(what: str, pairs: _Pairs, found: _Found, legacy: bool = False) -> None:
    """A marshalled function (base64 in "code" or "value", or the legacy list's first item):
    AL950 with the names its bytecode holds; AL953 too when one of them runs code."""
    config = pairs.last()
    inner = config.get("config")
    holder = inner.last() if isinstance(inner, _Pairs) else config
    code = holder.get("code", holder.get("value"))
    if not isinstance(code, str):
        found.add(TamperKind.KERAS_LAMBDA, f"{what} holds code of no known shape")
        return
    raw = _b64(code[: MAX_CODE_BYTES * 2])
    if raw is None:  # a source string (Keras's func_load falls back to nothing: not loadable)
        found.add(
            TamperKind.KERAS_LAMBDA,
            f"{what} ships Python source or text: {untrusted_text(code, 120)!r}",
        )
        return
    names = list(dict.fromkeys(_marshal_strings(raw)))
    shown = ", ".join(untrusted_text(n, 40) for n in names[:16]) or "none"
    found.add(
        TamperKind.KERAS_LAMBDA,
        f"{what} ships marshalled Python bytecode ({len(raw)} bytes; names in it: {shown})",
    )
    risky = [n for n in names if _risky(n)]
    if risky:
        why = f"{what}: its bytecode names {', '.join(untrusted_text(n, 40) for n in risky[:8])}"
        found.add(TamperKind.KERAS_DANGEROUS_FUNCTION, why)


def _marshal_strings(raw: bytes) -> Iterator[str]:
    """The short strings of a marshalled code object (names, constants), read by their type
    byte and length (a heuristic: what it shows is evidence, never a reason to call clean)."""
    for i, b in enumerate(raw):
        kind = b & 0x7F  # FLAG_REF set or not
        if kind in _SHORT and i + 1 < len(raw):
            n, at = raw[i + 1], i + 2
        elif kind in _LONG and i + 5 <= len(raw):
            n, at = int.from_bytes(raw[i + 1 : i + 5], "little"), i + 5
        else:
            continue
        text = raw[at : at + n]
        if 2 <= n <= 200 and len(text) == n and _PRINTABLE.fullmatch(text):
            yield text.decode("ascii")


def _risky(name: str) -> bool:
    words = [w for w in re.split(r"[^A-Za-z0-9_]+", name) if w.isidentifier()]
    if name.startswith(("/bin/", "/usr/bin/", "/dev/tcp", "/proc/self", "/etc/")):
        return True
    return any(
        judge_global("builtins", w).severity is Severity.CRITICAL
        and w not in {"input", "memoryview"}
        for w in words[:32]
    )


def _b64(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=False)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if raw else None


def _pickled_module(config: _Pairs, found: _Found) -> None:
    """A TorchModuleWrapper's "module": base64 of torch.save's stream (a zip of pickles, or
    a legacy pickle): AL954, and the pickle's imports for the rules to judge."""
    blob = config.last().get("module")
    name = untrusted_text(str(config.last().get("name", "?")), 80)
    if not isinstance(blob, str):
        return
    if len(blob) > MAX_BLOB_BYTES * 4 // 3 + 4:
        found.add(
            TamperKind.KERAS_CONFIG_UNREADABLE,
            f"the TorchModuleWrapper {name!r} holds a module larger than the host reads",
        )
        return
    raw = _b64(blob)
    if raw is None:
        found.add(
            TamperKind.KERAS_CONFIG_UNREADABLE,
            f"the TorchModuleWrapper {name!r} holds no base64 stream",
        )
        return
    where = f"{found.where} TorchModuleWrapper {name}"
    imports: list[Import] = []
    if raw.startswith(b"PK"):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                for info in zf.infolist()[:1000]:
                    if not info.filename.endswith(".pkl"):
                        continue
                    if info.file_size > MAX_BLOB_BYTES:
                        found.add(
                            TamperKind.KERAS_CONFIG_UNREADABLE,
                            f"{where}: {info.filename} is too large to read",
                        )
                        continue
                    with zf.open(info) as member:
                        data = member.read(MAX_BLOB_BYTES)
                    imports += imports_in_bytes(data, f"{where}: {info.filename}")
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
            found.add(
                TamperKind.KERAS_CONFIG_UNREADABLE, f"{where}: a damaged torch.save archive ({e})"
            )
    else:
        imports = imports_in_bytes(raw, where)
    found.out.imports += imports[:1000]
    shown = ", ".join(untrusted_text(f"{i.module}.{i.name}", 60) for i in imports[:8]) or "none"
    found.add(
        TamperKind.KERAS_PICKLED_MODULE,
        f"the TorchModuleWrapper {name!r} holds a pickled torch module ({len(raw)} bytes; "
        f"it imports {shown})",
    )
