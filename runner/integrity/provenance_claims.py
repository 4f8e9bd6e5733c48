"""Provenance claims: each item of a model's declared provenance recorded as a claim, and the
one thing Airlock can check, digests, compared with the root digests it computed.

The declared provenance is read by runner.integrity.provenance_sources. The model's own digest
claim is compared with the root digest Airlock computed (`verified` or `mismatch`); the base
model's digest is compared with the base model's root digest when the caller knows it (a diff
against the base model), else it stays `claimed`. Everything else stays `claimed`.

`provenance_for` never raises on the provenance file's content: a file that cannot be read or
parsed becomes a note in the ProvenanceInfo.

A provenance file inside a model directory is part of the files the root digest covers, and a
file cannot hold the digest of a directory that contains it; so its `digest` claim is checked
against the root digest of the model's *other* files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from runner.errors import untrusted_text
from runner.integrity.provenance_sources import MAX_TEXT, Frozen, Provenance, load_provenance
from runner.static.manifest import FileDigest, file_digests, parse_sha256, root_digest

MAX_NOTES = 20

ClaimStatus = Literal["claimed", "verified", "mismatch"]


class Claim(Frozen):
    field: str = Field(description="e.g. digest, base_model.digest, datasets[0].name")
    value: str = Field(description="the claimed value, made printable, one line, bounded")
    status: ClaimStatus
    source: str = Field(description="the file the claim was read from")
    note: str = ""


class ProvenanceInfo(Frozen):
    source: str = Field(description="the file the provenance was read from")
    claims: list[Claim]
    provenance: Provenance
    notes: list[str] = Field(
        default_factory=list,
        description="keys that were not read, files that were refused or could not be parsed",
    )


# --- claims ------------------------------------------------------------------------------------


def _digest_claim(
    name: str, claimed: str, actual: str | None, source: str, what: str, note: str = ""
) -> Claim:
    value = untrusted_text(claimed, MAX_TEXT)
    digest = parse_sha256(claimed)
    if digest is None:
        return Claim(
            field=name,
            value=value,
            status="claimed",
            source=source,
            note="not a sha256 digest (sha256:HEX or HEX); not checked",
        )
    if not actual:
        return Claim(
            field=name,
            value=value,
            status="claimed",
            source=source,
            note=f"the {what}'s root digest is not known; not checked",
        )
    ok = digest == actual.strip().lower().removeprefix("sha256:")
    text = f"matches the {what}'s root digest" if ok else f"the {what}'s root digest is {actual}"
    return Claim(
        field=name,
        value=value,
        status="verified" if ok else "mismatch",
        source=source,
        note=f"{text}{'; ' + note if note else ''}",
    )


def check_claims(
    prov: Provenance,
    model_root: str,
    base_root: str | None = None,
    *,
    source: str = "",
    digest_note: str = "",
) -> list[Claim]:
    """Every non-empty field as a claim; the digests checked against the root digests given.
    `source` names the file the claims came from."""

    def claim(name: str, value: str) -> Claim:
        return Claim(
            field=name, value=untrusted_text(value, MAX_TEXT), status="claimed", source=source
        )

    out = [
        claim(n, v) for n, v in (("source_uri", prov.source_uri), ("revision", prov.revision)) if v
    ]
    if prov.digest:
        out.append(_digest_claim("digest", prov.digest, model_root, source, "model", digest_note))
    if prov.license:
        out.append(claim("license", prov.license))
    if prov.base_model is not None:
        b = prov.base_model
        out += [claim(f"base_model.{n}", v) for n, v in (("name", b.name), ("uri", b.uri)) if v]
        if b.digest:
            out.append(
                _digest_claim("base_model.digest", b.digest, base_root, source, "base model")
            )
    for i, d in enumerate(prov.datasets):
        out += [claim(f"datasets[{i}].{n}", v) for n, v in d.model_dump().items() if v]
    return out


# --- the entry point ---------------------------------------------------------------------------


def _inside(path: Path, model: Path) -> bool:
    return model.is_dir() and path.parent == model


def provenance_for(
    model: Path,
    model_root: str,
    base_root: str | None = None,
    *,
    files: Sequence[FileDigest] | None = None,
) -> ProvenanceInfo | None:
    """Read and check the model's provenance. Never raises on the file's content: a file that
    cannot be read or parsed gives a ProvenanceInfo with no claims and a note saying why.

    `files` are the model's per-file digests (the report's model.files); they are used when a
    provenance file inside a model directory claims a digest, to compute the root digest of
    the other files without hashing the model again."""
    loaded = load_provenance(model)
    if loaded is None:
        return None
    source = loaded.path.name
    if loaded.provenance is None:
        return ProvenanceInfo(
            source=source,
            claims=[],
            provenance=Provenance(),
            notes=[f"{source}: {loaded.error}; no claims were read"],
        )
    prov = loaded.provenance
    root, digest_note = model_root, ""
    if prov.digest and _inside(loaded.path, model) and parse_sha256(prov.digest):
        digests = list(files) if files is not None else file_digests(model)
        others = [d for d in digests if d.path != source]
        root = root_digest(others)
        digest_note = (
            f"checked over the model's files other than {source}, which cannot hold its own digest"
        )
    elif prov.digest and model.is_file() and parse_sha256(prov.digest) != root:
        # for a single file, its own sha256 (what sha256sum prints) is as good a claim
        own = (list(files) if files is not None else file_digests(model))[0].sha256
        if parse_sha256(prov.digest) == own:
            root, digest_note = own, "checked as the file's own sha256"
    claims = check_claims(prov, root, base_root, source=source, digest_note=digest_note)
    notes = [f"{source}: {untrusted_text(n, 300)}" for n in loaded.notes[:MAX_NOTES]]
    return ProvenanceInfo(source=source, claims=claims, provenance=prov, notes=notes)
