"""The static pre-flight, on the host, reading bytes only (no Docker: nothing is loaded).

It names the gadget imports of plain and memo-obfuscated pickles, flags the tampering cases of
the hostile corpus, runs under time and memory bounds, and finds nothing above info in benign
models of every format. Signatures and provenance are checked before anything would start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.controller.sandbox import Sandbox
from runner.integrity.sign import sign
from runner.rules.catalog import Severity
from runner.static import preflight
from runner.static.preflight import SigningOptions
from tests.fixtures import models
from tests.fixtures.pki import Pki
from tests.hostile.corpus import CORPUS

ROOT = Path(__file__).resolve().parents[2]
BY_NAME = {f.name: f for f in CORPUS}

# fixture -> what the static read must report: tamper checks, and imports it must list
STATIC_EXPECT: dict[str, tuple[set[str], set[str]]] = {
    "builtins.exec": (set(), {"builtins.exec"}),
    "runpy": (set(), {"runpy._run_module_code"}),
    "memo STACK_GLOBAL": (set(), {"?.?"}),
    "ctypes": (set(), {"ctypes.CDLL"}),
    "zip CRC": ({"zip-crc"}, set()),
    "polyglot": ({"polyglot"}, {"posix.system"}),
    "zip bomb": ({"zip-bomb"}, set()),
    "zip local header": ({"zip-header"}, set()),
    "zip hidden bytes": ({"zip-hidden-data"}, set()),
    "zip trailing data": ({"zip-trailing-data"}, set()),
    "zip unreferenced member": ({"zip-unreferenced"}, set()),
    "zip fake end record": ({"zip-hidden-data"}, set()),
    "onnx ../": ({"onnx-external-data"}, set()),
    "onnx nested": ({"onnx-external-data"}, set()),
    "onnx absolute": ({"onnx-external-data"}, set()),
    "onnx symlink": ({"onnx-external-data"}, set()),
    "safetensors header bomb": ({"safetensors-header"}, set()),
    "safetensors offsets": ({"safetensors-offsets"}, set()),
    "broken stream": ({"pickle-truncated"}, set()),
}


@pytest.mark.parametrize("name", sorted(STATIC_EXPECT))
def test_the_static_read_flags_the_hostile_fixture(name: str, tmp_path: Path) -> None:
    path = BY_NAME[name].build(tmp_path, str(tmp_path / "marker"))
    result = preflight.bounded(path)
    checks, imports = STATIC_EXPECT[name]
    assert not result.aborted
    assert checks <= {t.check for t in result.tamper}, result.tamper
    seen = {f"{i.module}.{i.name}" for i in result.imports}
    assert imports <= seen, seen
    assert not (tmp_path / "marker").exists()


def test_gadget_imports_are_listed_by_the_report(tmp_path: Path) -> None:
    path = BY_NAME["memo STACK_GLOBAL"].build(tmp_path, "/tmp/never")
    report = Sandbox(path).preflight_report()
    assert report.integrity is not None and report.integrity.static.imports
    ids = {f.rule_id for f in report.findings}
    assert "AL612" in ids and all(f.source.value == "static" for f in report.findings)
    path = BY_NAME["builtins.eval"].build(tmp_path, "/tmp/never")
    report = Sandbox(path).preflight_report()
    assert "builtins.eval" in report.integrity.static.imports  # type: ignore[union-attr]
    assert "AL611" in {f.rule_id for f in report.findings}


def test_benign_models_of_every_format_give_nothing_above_info(tmp_path: Path) -> None:
    x = models.sample_input()
    builders = (
        models.onnx_model,
        models.torchscript_model,
        models.full_module_pickle,
        models.safetensors_model,
    )
    for b in builders:
        (tmp_path / b.__name__).mkdir()
    paths = [b(tmp_path / b.__name__, x).path for b in builders]
    (tmp_path / "sd").mkdir()
    paths.append(models.state_dict_checkpoint(tmp_path / "sd"))
    for p in paths:
        report = Sandbox(p).preflight_report()
        worst = [f for f in report.findings if f.severity.rank > Severity.INFO.rank]
        assert worst == [], (p, [(f.rule_id, f.evidence) for f in worst])
        assert report.verdict.value == "clean" and report.integrity is not None
        assert report.model.format != "unknown"


def test_the_read_is_bounded_in_time_and_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.pkl"
    n = 400 << 20  # one BINBYTES8 argument of 400 MiB (a sparse file: cheap to make)
    with big.open("wb") as f:
        f.write(b"\x80\x04\x8e" + n.to_bytes(8, "little"))
        f.seek(11 + n)
        f.write(b"0\x8c\x02os\x8c\x06system\x93.")  # POP, then os.system after the blob
    result = preflight.bounded(big, memory_bytes=256 << 20)
    assert not result.aborted, "a large argument is skipped, not read"
    assert [(i.module, i.name) for i in result.imports] == [("os", "system")]
    # an argument just under the skipping size is read: with almost no memory left, it fails
    small = tmp_path / "small.pkl"
    small.write_bytes(b"\x80\x04\x8e" + (1 << 20).to_bytes(8, "little") + b"\0" * (1 << 20) + b".")
    result = preflight.bounded(small, memory_bytes=16 << 20)
    assert "memory bound" in result.aborted and result.format == "pickle"
    slow = preflight.bounded(BY_NAME["zip bomb"].build(tmp_path, "/tmp/never"), timeout_s=0.01)
    assert "time bound" in slow.aborted


def test_an_aborted_read_is_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "TIME_BASE_S", 0.001)
    monkeypatch.setattr(preflight, "TIME_PER_GIB_S", 0.0)
    report = Sandbox(BY_NAME["zip CRC"].build(tmp_path, "/tmp/never")).preflight_report()
    assert "AL703" in {f.rule_id for f in report.findings}
    assert report.integrity is not None and "time bound" in report.integrity.static.aborted


def test_the_child_prints_json(tmp_path: Path) -> None:
    path = BY_NAME["polyglot"].build(tmp_path, "/tmp/never")
    proc = subprocess.run(
        [sys.executable, "-m", "runner.static.preflight", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    data = json.loads(proc.stdout)
    assert data["format"] == "pickle" and data["tamper"][0]["check"] == "polyglot"


# --- signatures and provenance, before anything starts -------------------------------------


@pytest.fixture
def signed(tmp_path: Path, pki: Pki) -> tuple[Path, SigningOptions]:
    from runner.integrity.trust import TrustPolicy

    (tmp_path / "m").mkdir()
    m = models.onnx_model(tmp_path / "m", models.sample_input()).path
    sign(m, m.with_name(m.name + ".sig"), private_key=pki.key)
    return m, SigningOptions(trust=TrustPolicy.for_key(pki.pub), require=True)


def test_a_signature_beside_the_model_is_found_and_verified(
    signed: tuple[Path, SigningOptions],
) -> None:
    m, opts = signed
    report = Sandbox(m, signing=opts).preflight_report()
    assert report.integrity is not None and report.integrity.signature is not None
    assert report.integrity.signature.verified and report.error is None
    assert report.integrity.signature.subject_digest == report.model.root_digest


def test_a_required_signature_that_fails_stops_with_a_finding(
    signed: tuple[Path, SigningOptions],
) -> None:
    m, opts = signed
    m.write_bytes(m.read_bytes() + b"\0")
    report = Sandbox(m, signing=opts).preflight_report()
    assert [f.rule_id for f in report.findings] == ["AL811"]
    assert report.error is not None and report.error.kind == "IntegrityError"
    assert report.sandbox is None
    m.with_name(m.name + ".sig").unlink()
    report = Sandbox(m, signing=opts).preflight_report()
    assert "AL812" in {f.rule_id for f in report.findings}


def test_declared_provenance_is_checked(tmp_path: Path) -> None:
    m = models.onnx_model(tmp_path, models.sample_input()).path
    m.with_name(m.name + ".provenance.json").write_text(
        json.dumps(
            {
                "source_uri": "https://example.invalid/m",
                "digest": "0" * 64,
                "base_model": {"name": "base", "digest": "1" * 64},
            }
        )
    )
    report = Sandbox(m).preflight_report()
    assert report.integrity is not None and report.integrity.provenance is not None
    status = {c.field: c.status for c in report.integrity.provenance.claims}
    assert status["digest"] == "mismatch" and status["base_model.digest"] == "claimed"
    assert "AL813" in {f.rule_id for f in report.findings}


class _Gadget:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("true",))


def test_torch_variants_read_right(tmp_path: Path) -> None:
    """Benign traced, scripted and lite TorchScript and legacy (pre-zip) torch.save files are
    clean; a gadget in a legacy file's main pickle is listed; a fake end record is flagged."""
    import torch

    m = torch.nn.Sequential(torch.nn.Linear(3, 2))
    torch.jit.save(torch.jit.trace(m, torch.zeros(1, 3)), tmp_path / "traced.pt")
    torch.jit.save(torch.jit.script(m), tmp_path / "scripted.pt")
    torch.jit.script(m)._save_for_lite_interpreter(str(tmp_path / "lite.ptl"))
    torch.save(m, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("traced.pt", "scripted.pt", "lite.ptl", "legacy.pt"):
        result = preflight.bounded(tmp_path / name)
        assert result.tamper == [] and not result.aborted, (name, result.tamper)
    torch.save(
        {"w": torch.zeros(2), "x": _Gadget()},
        tmp_path / "evil.pt",
        _use_new_zipfile_serialization=False,
    )
    result = preflight.bounded(tmp_path / "evil.pt")
    assert ("posix", "system") in [(i.module, i.name) for i in result.imports]
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    data = (tmp_path / "sd.pt").read_bytes()
    end = data[data.rfind(b"PK\x05\x06") :]
    (tmp_path / "fake.pt").write_bytes(data + b"\0" * 1000 + end)
    result = preflight.bounded(tmp_path / "fake.pt")
    assert "zip-hidden-data" in {t.check for t in result.tamper}
