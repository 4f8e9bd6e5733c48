"""Provenance claims: read next to a model, digests checked, hostile files survived."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.integrity.provenance_claims import (
    Claim,
    ProvenanceInfo,
    check_claims,
    provenance_for,
)
from runner.integrity.provenance_sources import (
    MAX_FILE_BYTES,
    Provenance,
    front_matter,
    read_provenance,
)
from runner.report import file_digests, root_digest

BASE_ROOT = "ab" * 32


def by_field(info: ProvenanceInfo) -> dict[str, Claim]:
    return {c.field: c for c in info.claims}


def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights" * 100)
    (d / "config.json").write_text('{"hidden": 4}')
    return d


def others_root(d: Path, skip: str) -> str:
    """The root digest of a directory's files other than the provenance file."""
    return root_digest([f for f in file_digests(d) if f.path != skip])


def write_prov(path: Path, **doc: object) -> None:
    path.write_text(json.dumps(doc))


def full_doc(digest: str, base_digest: str = "sha256:" + BASE_ROOT) -> dict[str, object]:
    return {
        "source_uri": "https://huggingface.co/acme/tiny",
        "revision": "abc123",
        "digest": digest,
        "license": "apache-2.0",
        "base_model": {
            "name": "acme/base",
            "uri": "https://huggingface.co/acme/base",
            "digest": base_digest,
        },
        "datasets": [
            {
                "name": "acme/corpus",
                "source": "https://example.org/corpus",
                "collection": "crawl",
                "filtering": "dedup",
                "date_frozen": "2024-05-01",
                "license": "cc-by-4.0",
            }
        ],
    }


def test_directory_digest_matches_is_verified(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    # the file cannot hold its own digest: the claim covers the other files
    root = others_root(d, "airlock-provenance.json")
    write_prov(d / "airlock-provenance.json", **full_doc("sha256:" + root))
    full_root = root_digest(file_digests(d))
    info = provenance_for(d, full_root)
    assert info is not None and info.source == "airlock-provenance.json"
    claims = by_field(info)
    assert claims["digest"].status == "verified"
    assert "other than airlock-provenance.json" in claims["digest"].note
    assert claims["source_uri"].status == "claimed"
    assert claims["revision"].value == "abc123"
    assert claims["license"].status == "claimed"
    assert claims["datasets[0].name"].value == "acme/corpus"
    assert claims["datasets[0].date_frozen"].status == "claimed"
    assert info.provenance.base_model is not None
    assert info.provenance.base_model.name == "acme/base"
    assert info.notes == []
    # the same answer from the report's per-file digests, without hashing again
    again = provenance_for(d, full_root, files=file_digests(d))
    assert again == info


def test_wrong_digest_is_a_mismatch(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    write_prov(d / "provenance.json", digest="0" * 64)
    info = provenance_for(d, root_digest(file_digests(d)))
    assert info is not None
    claim = by_field(info)["digest"]
    assert claim.status == "mismatch"
    assert others_root(d, "provenance.json") in claim.note


def test_base_digest_verified_only_when_the_base_root_is_known(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    write_prov(d / "airlock-provenance.json", **full_doc("1" * 64))
    root = root_digest(file_digests(d))

    unknown = provenance_for(d, root)
    assert unknown is not None
    assert by_field(unknown)["base_model.digest"].status == "claimed"
    assert "not known" in by_field(unknown)["base_model.digest"].note

    known = provenance_for(d, root, base_root=BASE_ROOT)
    assert known is not None
    assert by_field(known)["base_model.digest"].status == "verified"

    other = provenance_for(d, root, base_root="cd" * 32)
    assert other is not None
    assert by_field(other)["base_model.digest"].status == "mismatch"


def test_check_claims_directly() -> None:
    prov = read_provenance_from({"digest": "SHA256:" + "AB" * 32, "revision": "v1"})
    claims = {c.field: c for c in check_claims(prov, "ab" * 32)}
    assert claims["digest"].status == "verified"
    assert claims["revision"].status == "claimed"
    claims = {c.field: c for c in check_claims(prov, "")}
    assert claims["digest"].status == "claimed"
    odd = read_provenance_from({"digest": "md5:abc"})
    (claim,) = check_claims(odd, "ab" * 32)
    assert claim.status == "claimed" and "not a sha256 digest" in claim.note


def read_provenance_from(doc: dict[str, object]) -> Provenance:
    return Provenance.model_validate(doc)


def test_file_model_with_its_own_provenance_file(tmp_path: Path) -> None:
    m = tmp_path / "tiny.safetensors"
    m.write_bytes(b"weights")
    (d,) = file_digests(m)
    write_prov(
        tmp_path / "tiny.safetensors.provenance.json", digest=d.sha256, base_model="acme/base"
    )
    write_prov(tmp_path / "provenance.json", digest="0" * 64)  # not read: the file's own wins
    info = provenance_for(m, root_digest([d]))
    assert info is not None and info.source == "tiny.safetensors.provenance.json"
    assert by_field(info)["digest"].status == "verified"
    assert by_field(info)["base_model.name"].value == "acme/base"
    assert any("provenance.json not read" in n for n in info.notes)
    prov = read_provenance(m)
    assert prov is not None and prov.digest == d.sha256


def test_model_card_front_matter(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    (d / "README.md").write_text(
        "---\n"
        "license: other\n"
        "license_name: acme-community   # a comment\n"
        "base_model:\n"
        "- acme/base-7b\n"
        "datasets:\n"
        "  - acme/corpus\n"
        "  - 'acme/extra'\n"
        "tags: [a, b]\n"
        "model-index:\n"
        "- name: tiny\n"
        "  results:\n"
        "  - task: {type: text-generation}\n"
        "---\n\n# Tiny\n\nA model card with a digest: 0000 that is not read.\n"
    )
    info = provenance_for(d, root_digest(file_digests(d)))
    assert info is not None and info.source == "README.md"
    claims = by_field(info)
    assert claims["license"].value == "acme-community"
    assert claims["base_model.name"].value == "acme/base-7b"
    assert [c.value for f, c in claims.items() if f.startswith("datasets")] == [
        "acme/corpus",
        "acme/extra",
    ]
    assert "digest" not in claims
    assert all(c.status == "claimed" for c in info.claims)
    assert any("only base_model, license and datasets" in n for n in info.notes)


def test_front_matter_subset() -> None:
    assert front_matter("# no front matter\n") is None
    assert front_matter("---\nlicense: mit\n") is None  # never closed
    fm = front_matter('---\nlicense: "mit"\nbase_model: [a, "b"]\nnested:\n  key: v\n---\n')
    assert fm == {"license": "mit", "base_model": ["a", "b"], "nested": None}


def test_readme_without_front_matter_is_no_provenance(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    (d / "README.md").write_text("# just a readme\n")
    assert provenance_for(d, "") is None
    assert read_provenance(d) is None


def test_no_provenance(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    assert provenance_for(d, "") is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"digest": "abc",', "not valid JSON (line 1"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"digest": 42}', "does not fit the provenance schema: digest"),
        (b'{"datasets": [{"name": ["x"]}]}', "datasets.0.name"),
        (b'{"license": "' + b"x" * 5000 + b'"}', "at most 4096 characters"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ],
)
def test_malformed_file_is_a_note_not_an_exception(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    d = model_dir(tmp_path)
    (d / "airlock-provenance.json").write_bytes(content)
    info = provenance_for(d, "ab" * 32)
    assert info is not None
    assert info.claims == [] and info.provenance.digest == ""
    (note,) = info.notes
    assert problem in note and "no claims were read" in note and "\n" not in note
    with pytest.raises(UsageError, match="provenance file"):
        read_provenance(d)


def test_unknown_keys_are_noted(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    write_prov(
        d / "airlock-provenance.json",
        revision="r1",
        signed_by="mallory",
        base_model={"name": "b", "weights": "x"},
        datasets=["plain-name", {"size": 3}],
    )
    info = provenance_for(d, "")
    assert info is not None
    assert by_field(info)["revision"].value == "r1"
    assert by_field(info)["datasets[0].name"].value == "plain-name"
    (note,) = info.notes
    assert "signed_by" in note and "base_model.weights" in note and "datasets[1].size" in note


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    big = {"revision": "r", "padding": "x" * MAX_FILE_BYTES}
    write_prov(d / "airlock-provenance.json", **big)
    info = provenance_for(d, "")
    assert info is not None and info.claims == []
    (note,) = info.notes
    assert "larger than the 1048576 bytes" in note and "not read" in note


def test_symlink_and_fifo_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    write_prov(secret, revision="stolen")
    d = model_dir(tmp_path)
    (d / "airlock-provenance.json").symlink_to(secret)
    info = provenance_for(d, "")
    assert info is not None and info.claims == []
    assert "symlink" in info.notes[0]

    d2 = tmp_path / "m2"
    d2.mkdir()
    os.mkfifo(d2 / "provenance.json")
    info = provenance_for(d2, "")  # must not block on the pipe
    assert info is not None and "not a regular file" in info.notes[0]


def test_hostile_text_is_made_one_line(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    write_prov(d / "airlock-provenance.json", revision="r1\n\x1b[2Jverdict: clean")
    info = provenance_for(d, "")
    assert info is not None
    value = by_field(info)["revision"].value
    assert "\n" not in value and "\x1b" not in value
    assert info.provenance.revision.startswith("r1\n")  # the raw claim is kept as data
