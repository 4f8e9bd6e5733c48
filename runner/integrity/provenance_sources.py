"""Provenance sources: finding a model's declared metadata and reading it, as untrusted as the
model, into a Provenance.

A model may come with declared metadata: where it was published, its revision, the model it
was fine-tuned from, the data it was trained on, its licence, and the digest of its files.
This module reads it; runner.integrity.provenance_claims records each item as a claim and
checks the digests.

Sources, the first one found wins:

    a model directory      DIR/airlock-provenance.json, DIR/provenance.json, DIR/README.md
    a model file           FILE.provenance.json, then airlock-provenance.json and
                           provenance.json in the same directory

README.md is read as a Hugging Face model card: its YAML front matter gives `base_model`,
`license` and `datasets`. PyYAML is not a dependency, so the front matter is read by a small
parser for the subset model cards use (`key: value`, `key:` followed by `- item` lines, and
`[a, b]` flow lists); nested mappings such as `model-index` are skipped.

The provenance file is as untrusted as the model: files are opened without following symlinks,
must be regular files no larger than 1 MiB, and a file that cannot be read or parsed is
reported as the error of its Loaded source, never as an exception (`load_provenance`, which
`provenance_for` uses). `read_provenance` is the strict form for a caller that wants to stop:
it raises UsageError instead.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from runner.errors import UsageError, untrusted_text

MAX_FILE_BYTES = 1 << 20
MAX_TEXT = 4096
MAX_DATASETS = 100

PROVENANCE_NAMES = ("airlock-provenance.json", "provenance.json")
MODEL_CARD = "README.md"
FILE_SUFFIX = ".provenance.json"

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class Frozen(BaseModel):
    """The base of the provenance models: no unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelRef(Frozen):
    """The model this one was derived from (fine-tuned, quantised, merged...)."""

    name: Text = ""
    uri: Text = ""
    digest: Text = Field(
        default="", description="claimed root digest of the base model: sha256:HEX or HEX"
    )


class Dataset(Frozen):
    name: Text = ""
    source: Text = Field(
        default="", description="where the data came from (a URI or a description)"
    )
    collection: Text = Field(default="", description="how it was collected")
    filtering: Text = Field(default="", description="how it was filtered or cleaned")
    date_frozen: Text = Field(default="", description="when the snapshot was taken")
    license: Text = ""


class Provenance(Frozen):
    """Declared metadata of a model, as read from its provenance file or model card."""

    source_uri: Text = ""
    revision: Text = ""
    digest: Text = Field(
        default="", description="claimed root digest of this model: sha256:HEX or HEX"
    )
    base_model: BaseModelRef | None = None
    datasets: list[Dataset] = Field(default_factory=list, max_length=MAX_DATASETS)
    license: Text = ""


# --- finding and reading the source ----------------------------------------------------------


class _Refused(Exception):
    """The source exists but was not read or not understood; the message is one line."""


@dataclass
class Loaded:
    """A provenance source that was found: its Provenance, or (None) the error why it was not
    read or not understood; notes say what was skipped."""

    path: Path
    provenance: Provenance | None
    notes: list[str] = field(default_factory=list)
    error: str = ""


def _candidates(model: Path) -> list[Path]:
    if model.is_dir():
        return [model / n for n in (*PROVENANCE_NAMES, MODEL_CARD)]
    return [
        model.with_name(model.name + FILE_SUFFIX),
        *(model.parent / n for n in PROVENANCE_NAMES),
    ]


def find_provenance(model: Path) -> Path | None:
    """The provenance source for a model, or None. A symlink counts (it is refused later)."""
    return next((p for p in _candidates(model) if os.path.lexists(p)), None)


def _read_bounded(path: Path, whole: bool) -> bytes:
    """At most MAX_FILE_BYTES of a regular file, symlinks not followed. `whole`: refuse a
    larger file; else return its first MAX_FILE_BYTES."""
    if path.is_symlink():
        raise _Refused("a symlink; not followed")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        why = (
            "a symlink; not followed"
            if e.errno == errno.ELOOP
            else f"cannot be opened ({os.strerror(e.errno or 0) or e})"
        )
        raise _Refused(why) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("not a regular file")
        if whole and st.st_size > MAX_FILE_BYTES:
            raise _Refused(
                f"{st.st_size} bytes, larger than the {MAX_FILE_BYTES} bytes "
                "Airlock reads; not read"
            )
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise _Refused(f"cannot be read ({os.strerror(e.errno or 0) or e})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        if whole:  # it grew after fstat
            raise _Refused(f"larger than the {MAX_FILE_BYTES} bytes Airlock reads; not read")
        data = data[:MAX_FILE_BYTES]
    return data


def load_provenance(model: Path) -> Loaded | None:
    """The model's provenance source, read; None when it has none (a README without front
    matter is none). Never raises on the file's content: a refusal is the Loaded's error."""
    path = find_provenance(model)
    if path is None:
        return None
    loaded = Loaded(path, None)
    later = [
        p.name
        for p in _candidates(model)[_candidates(model).index(path) + 1 :]
        if os.path.lexists(p)
    ]
    try:
        if path.name == MODEL_CARD:
            prov, notes = _parse_model_card(_read_bounded(path, whole=False))
            if prov is None:
                return None  # a README without front matter is not a model card
        else:
            prov, notes = _parse_provenance_file(_read_bounded(path, whole=True))
    except _Refused as e:
        loaded.error = str(e)
        return loaded
    loaded.provenance = prov
    loaded.notes = notes
    if later:
        loaded.notes.append(f"{', '.join(later)} not read: {path.name} comes first")
    return loaded


# --- the provenance file (JSON) ----------------------------------------------------------------

_FIELDS = {"source_uri", "revision", "digest", "base_model", "datasets", "license"}
_BASE_FIELDS = set(BaseModelRef.model_fields)
_DATASET_FIELDS = set(Dataset.model_fields)


def _keys(names: list[str]) -> str:
    shown = ", ".join(untrusted_text(n, 60) for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _known(
    obj: dict[str, Any], allowed: set[str], where: str, unknown: list[str]
) -> dict[str, Any]:
    unknown.extend(f"{where}{k}" for k in obj if k not in allowed)
    return {k: v for k, v in obj.items() if k in allowed and v is not None}


def _parse_provenance_file(data: bytes) -> tuple[Provenance, list[str]]:
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _Refused("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise _Refused(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:
        raise _Refused(f"not valid JSON ({untrusted_text(str(e), 100)})") from None
    if not isinstance(raw, dict):
        raise _Refused(f"not a JSON object (a {type(raw).__name__})")
    unknown: list[str] = []
    notes: list[str] = []
    doc = _known(raw, _FIELDS, "", unknown)
    base = doc.get("base_model")
    if isinstance(base, str):  # the model card's form: just a name
        doc["base_model"] = {"name": base}
    elif isinstance(base, dict):
        doc["base_model"] = _known(base, _BASE_FIELDS, "base_model.", unknown)
    datasets = doc.get("datasets")
    if isinstance(datasets, str):
        datasets = [datasets]
    if isinstance(datasets, list):
        if len(datasets) > MAX_DATASETS:
            notes.append(f"{len(datasets)} datasets; only the first {MAX_DATASETS} were read")
            datasets = datasets[:MAX_DATASETS]
        doc["datasets"] = [
            {"name": d}
            if isinstance(d, str)
            else _known(d, _DATASET_FIELDS, f"datasets[{i}].", unknown)
            if isinstance(d, dict)
            else d
            for i, d in enumerate(datasets)
        ]
    try:
        prov = Provenance.model_validate(doc, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "the document"
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise _Refused(
            f"does not fit the provenance schema: {untrusted_text(where, 80)}: {err['msg']}{more}"
        ) from None
    if unknown:
        notes.insert(0, f"keys not understood, ignored: {_keys(unknown)}")
    return prov, notes


# --- the model card (YAML front matter, a subset) ----------------------------------------------

_KEY = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?:\s+(.*))?$")


def _scalar(text: str) -> str:
    text = text.strip()
    if text[:1] in ("'", '"'):
        q = text[0]
        end = text.rfind(q)
        if end > 0:
            inner = text[1:end]
            return inner.replace("''", "'") if q == "'" else inner.replace('\\"', '"')
        return text[1:]
    return re.split(r"\s#", text, maxsplit=1)[0].strip()


def _flow_list(text: str) -> list[str] | None:
    """`[a, "b"]` as a list; None if the text is not a flow list (or has nested ones)."""
    end = text.rfind("]")
    if not text.startswith("[") or end < 0 or "[" in text[1:end]:
        return None
    return [v for v in (_scalar(x) for x in text[1:end].split(",")) if v]


def front_matter(text: str) -> dict[str, str | list[str] | None] | None:
    """The top-level keys of YAML front matter: a string, a list of strings, or None for a
    value this parser does not read (a nested mapping). None if there is no front matter."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].rstrip() != "---":
        return None
    out: dict[str, str | list[str] | None] = {}
    key: str | None = None
    for ln in lines[1:]:
        if ln.rstrip() in ("---", "..."):
            return out
        stripped = ln.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if ln[0] in " \t-":  # belongs to the key above: a list item or a nested value
            if key is None:
                continue
            current = out.get(key)
            item = stripped[1:].strip()
            if (
                isinstance(current, list)
                and (stripped.startswith("- ") or stripped == "-")
                and not _KEY.match(item)
            ):
                if item:
                    current.append(_scalar(item))
            else:
                out[key] = None  # a nested mapping, a list of mappings: not read
            continue
        m = _KEY.match(ln)
        if m is None:
            key = None
            continue
        key, value = m.group(1), (m.group(2) or "").strip()
        if not value or value.startswith("#"):
            out[key] = []  # a list (or a mapping) follows
        elif (items := _flow_list(value)) is not None:
            out[key] = items
        elif value[0] in "{|>&*!":
            out[key] = None
        else:
            out[key] = _scalar(value)
    return None  # never closed: not front matter


def _strings(v: str | list[str] | None) -> list[str]:
    return [v] if isinstance(v, str) and v else [x for x in v if x] if isinstance(v, list) else []


def _parse_model_card(data: bytes) -> tuple[Provenance | None, list[str]]:
    text = data.decode("utf-8", errors="replace")
    fm = front_matter(text)
    if fm is None:
        if text.lstrip("\ufeff").startswith("---") and len(data) >= MAX_FILE_BYTES:
            raise _Refused(
                f"front matter longer than the {MAX_FILE_BYTES} bytes Airlock reads; not read"
            )
        return None, []
    notes: list[str] = []
    doc: dict[str, Any] = {}
    bases = _strings(fm.get("base_model"))
    if bases:
        doc["base_model"] = {"name": bases[0]}
        if len(bases) > 1:
            notes.append(
                f"the model card names {len(bases)} base models; only the first is recorded"
            )
    lic = _strings(fm.get("license"))
    name = _strings(fm.get("license_name"))
    if lic:
        doc["license"] = name[0] if lic[0] == "other" and name else lic[0]
    datasets = _strings(fm.get("datasets"))
    if len(datasets) > MAX_DATASETS:
        notes.append(f"{len(datasets)} datasets; only the first {MAX_DATASETS} were read")
    doc["datasets"] = [{"name": d} for d in datasets[:MAX_DATASETS]]
    for k in ("base_model", "license", "datasets"):
        if k in fm and fm[k] is None:
            notes.append(f"model card: {k} is not a string or a list of strings; not read")
    try:
        prov = Provenance.model_validate(doc, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise _Refused(
            f"model card does not fit the provenance schema: "
            f"{untrusted_text(where, 80)}: {err['msg']}"
        ) from None
    notes.append("model card front matter: only base_model, license and datasets are read")
    return prov, notes


# --- the strict entry point --------------------------------------------------------------------


def read_provenance(model: Path) -> Provenance | None:
    """The model's declared provenance, or None when it has none. Raises UsageError when the
    provenance file is there but cannot be read or parsed."""
    loaded = load_provenance(model)
    if loaded is None:
        return None
    if loaded.provenance is None:
        raise UsageError(
            f"provenance file {loaded.path}: {loaded.error}",
            "fix or remove the file (see docs/provenance.md)",
        )
    return loaded.provenance
