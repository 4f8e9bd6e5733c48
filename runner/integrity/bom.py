"""A CycloneDX 1.6 ML-BOM for a report: the model, its files, its declared pedigree and data,
and what Airlock saw, as `airlock:` properties.

    metadata.component     the model (type machine-learning-model): name, the root digest as
                           its SHA-256 hash, version = the claimed revision, the claimed licence,
                           an external reference to the claimed source, one `file` sub-component
                           per model file (path, sha256, size), pedigree.ancestors = the claimed
                           base model, modelCard.modelParameters.datasets = refs to the datasets,
                           and the airlock: properties
    components             the claimed datasets (type data)
    metadata.tools         airlock and its version

cyclonedx-python-lib has no model for `modelCard`, so it is added to the JSON the library
writes; the result is checked against the 1.6 schema (strict) by the tests, and can be at run
time with `validate_bom`. The schemas ship with the library: validation is offline.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import PurePath

from cyclonedx.exception.model import InvalidUriException
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.license import DisjunctiveLicense
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.spdx import fixup_id
from cyclonedx.validation.json import JsonStrictValidator

from runner import __version__
from runner.errors import BomError
from runner.integrity.provenance_claims import Claim, ProvenanceInfo
from runner.report import Report
from runner.rules.catalog import Severity
from runner.static.manifest import parse_sha256

SPEC = SchemaVersion.V1_6
MODEL_REF = "model"


def _artifact_digest(report: Report) -> str:
    """A single file's own sha256 (what other tools compute for it); a directory's root
    digest. The root digest is in airlock:root-digest either way."""
    files = report.model.files
    if len(files) == 1 and files[0].path == PurePath(report.model.path).name:
        return files[0].sha256
    return report.model.root_digest


def _sha256(hexdigest: str) -> list[HashType]:
    d = parse_sha256(hexdigest)
    return [HashType(alg=HashAlgorithm.SHA_256, content=d)] if d else []


def _licenses(text: str) -> list[DisjunctiveLicense]:
    if not text:
        return []
    spdx = fixup_id(text.strip())
    return [DisjunctiveLicense(id=spdx) if spdx else DisjunctiveLicense(name=text)]


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def _uri(text: str) -> XsUri | None:
    """An absolute URI, or None: a claimed "source" may be a description."""
    text = text.strip()
    if not _SCHEME.match(text) or not text.isprintable() or len(text) > 2048:
        return None
    try:
        return XsUri(text)
    except InvalidUriException:
        return None


def _reference(uri: str) -> list[ExternalReference]:
    url = _uri(uri)
    if url is None:
        return []
    low = uri.lower()
    vcs = (
        low.startswith(("git+", "git://", "ssh://"))
        or low.endswith(".git")
        or any(h in low for h in ("://github.com/", "://gitlab.com/", "://bitbucket.org/"))
    )
    kind = ExternalReferenceType.VCS if vcs else ExternalReferenceType.DISTRIBUTION
    return [ExternalReference(type=kind, url=url)]


def _status(prov: ProvenanceInfo | None, name: str) -> Claim | None:
    return next((c for c in prov.claims if c.field == name), None) if prov else None


def _props(pairs: dict[str, str]) -> list[Property]:
    return [Property(name=k, value=v) for k, v in pairs.items()]


def _airlock_properties(
    report: Report, prov: ProvenanceInfo | None, extra: dict[str, str] | None
) -> dict[str, str]:
    out = {
        "airlock:verdict": report.verdict.value,
        "airlock:findings": str(len(report.findings)),
        "airlock:worst-severity": report.worst_severity() or "none",
        "airlock:root-digest": report.model.root_digest,
        "airlock:format": report.model.format,
    }
    worst: dict[str, Severity] = {}
    for f in report.findings:
        if f.rule_id not in worst or f.severity.rank > worst[f.rule_id].rank:
            worst[f.rule_id] = f.severity
    out.update({f"airlock:finding:{k}": v.value for k, v in sorted(worst.items())})
    if report.sandbox is not None:
        out["airlock:image-id"] = report.sandbox.image_id
        out["airlock:runtime"] = report.sandbox.runtime
    if report.error is not None:
        out["airlock:error"] = report.error.kind
    integ = report.integrity
    if integ is not None and integ.signature is not None:
        out["airlock:signature"] = "verified" if integ.signature.verified else "failed"
        out["airlock:signature:signer"] = integ.signature.signer
    if report.behavior is not None:  # behavioural results: the diff against the base model
        b = report.behavior
        out["airlock:diff:base-root-digest"] = b.base.root_digest
        out["airlock:diff:flagged-categories"] = ",".join(b.flagged) or "none"
        out["airlock:diff:control"] = b.control_kind
        out["airlock:diff:probes-digest"] = b.probes_digest
    if report.baseline is not None:
        out["airlock:baseline"] = report.baseline.name
        out["airlock:baseline:drift"] = "true" if report.baseline.drift else "false"
    if prov is not None:
        out["airlock:provenance:source"] = prov.source
        out.update(
            {
                f"airlock:claim:{c.field}": c.status
                for c in prov.claims
                if c.field.endswith("digest")
            }
        )
        out.update({f"airlock:provenance:note:{i}": n for i, n in enumerate(prov.notes)})
    out.update(extra or {})
    return {k: v for k, v in out.items() if v != ""}


def _files(report: Report) -> list[Component]:
    return [
        Component(
            type=ComponentType.FILE,
            name=f.path,
            bom_ref=f"{MODEL_REF}/file/{i}",
            hashes=_sha256(f.sha256),
            properties=_props({"airlock:size-bytes": str(f.size_bytes)}),
        )
        for i, f in enumerate(report.model.files)
    ]


def _base_model(prov: ProvenanceInfo) -> Component | None:
    base = prov.provenance.base_model
    if base is None or not (base.name or base.uri or base.digest):
        return None
    claim = _status(prov, "base_model.digest")
    props: dict[str, str] = {"airlock:digest-status": claim.status if claim else "none"}
    if claim and claim.note:
        props["airlock:digest-note"] = claim.note
    if base.digest and not parse_sha256(base.digest):
        props["airlock:claimed-digest"] = base.digest
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref="base-model",
        name=base.name or base.uri or "unnamed base model",
        hashes=_sha256(base.digest),
        external_references=_reference(base.uri),
        properties=_props(props),
    )


def _datasets(prov: ProvenanceInfo | None) -> list[Component]:
    if prov is None:
        return []
    out = []
    for i, d in enumerate(prov.provenance.datasets):
        props = {
            f"airlock:dataset:{k}": v
            for k, v in (
                ("source", d.source),
                ("collection", d.collection),
                ("filtering", d.filtering),
                ("date-frozen", d.date_frozen),
            )
            if v
        }
        out.append(
            Component(
                type=ComponentType.DATA,
                bom_ref=f"dataset/{i}",
                name=d.name or f"dataset {i}",
                licenses=_licenses(d.license),
                external_references=_reference(d.source),
                properties=_props(props),
            )
        )
    return out


def bom_for(
    report: Report,
    provenance: ProvenanceInfo | None = None,
    properties: dict[str, str] | None = None,
) -> str:
    """The report as a CycloneDX 1.6 JSON BOM (text). `properties` are added to the model's
    properties as they are (e.g. airlock:diff:flagged-categories) and win over Airlock's own."""
    prov = provenance.provenance if provenance else None
    base = _base_model(provenance) if provenance else None
    version_claim = prov.revision if prov else ""
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=MODEL_REF,
        name=PurePath(report.model.path).name or report.model.path or "model",
        version=version_claim or None,
        hashes=_sha256(_artifact_digest(report)),
        licenses=_licenses(prov.license if prov else ""),
        external_references=_reference(prov.source_uri if prov else ""),
        properties=_props(_airlock_properties(report, provenance, properties)),
        pedigree=Pedigree(ancestors=[base]) if base else None,
        components=_files(report),
    )
    datasets = _datasets(provenance)
    bom = Bom(metadata=BomMetaData(component=model), components=datasets)
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="airlock", version=__version__)
    )
    if datasets:
        bom.register_dependency(model, datasets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = make_outputter(bom, OutputFormat.JSON, SPEC).output_as_string()
    doc = json.loads(text)
    if datasets:
        doc["metadata"]["component"]["modelCard"] = {
            "modelParameters": {"datasets": [{"ref": str(d.bom_ref)} for d in datasets]}
        }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def validate_bom(text: str) -> None:
    """Check a JSON BOM against the CycloneDX 1.6 schema (strict), offline: the schemas ship
    with cyclonedx-python-lib. Raises BomError naming the first problem."""
    try:
        json.loads(text)
    except ValueError as e:
        raise BomError(f"the BOM is not JSON: {e}") from None
    error = JsonStrictValidator(SPEC).validate_str(text)
    if error is not None:
        data = error.data
        where = "/".join(str(p) for p in getattr(data, "absolute_path", [])) or "(the root)"
        msg = getattr(data, "message", str(data))
        raise BomError(
            f"the BOM does not fit CycloneDX {SPEC.to_version()}: at {where}: {msg[:300]}",
            "this is a bug in Airlock's BOM output",
        )


def checked_bom(report: Report, properties: dict[str, str] | None = None) -> str:
    """The BOM for a report (with the provenance the report recorded), validated."""
    prov = report.integrity.provenance if report.integrity else None
    text = bom_for(report, prov, properties)
    validate_bom(text)
    return text
