"""Faults: many sandboxes at once, some hostile, must not interfere with one another.

(The controller killed with SIGKILL, the engine unreachable, and the image missing or stale are
covered in tests/sandbox/test_cli.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import runner
from runner.batch import evaluation as batch
from tests.fixtures import hostile, models
from tests.sandbox.test_cli import sessions


def test_eight_sandboxes_at_once_two_hostile(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    x = models.sample_input()
    expected = {}
    for i in range(3):
        d = root / f"onnx{i}"
        d.mkdir()
        models.onnx_model(d, x)
        expected[f"onnx{i}/tiny.onnx"] = "clean"
        (root / f"ckpt{i}.pt").write_bytes((models.state_dict_checkpoint(d)).read_bytes())
        expected[f"ckpt{i}.pt"] = "clean"
    markers = {}
    for name in ("evil-a", "evil-b"):
        markers[name] = f"/tmp/airlock-{name}-marker"
        hostile.write(root / f"{name}.pkl", hostile.shell_marker(markers[name]))
        expected[f"{name}.pkl"] = "malicious"
    for i in range(3):  # only the models listed above: drop the checkpoints' copies
        (root / f"onnx{i}" / "checkpoint.pt").unlink()
    assert len(expected) == 8
    out = tmp_path / "out"
    results = list(
        batch.evaluate([root], jobs=8, out_dir=out, policy=runner.Policy(memory_bytes=512 << 20))
    )
    got = {str(Path(r.path).relative_to(root)): r for r in results}
    assert {k: r.verdict.value for k, r in got.items()} == expected
    for name, marker in markers.items():
        report = json.loads((out / str(got[f"{name}.pkl"].report)).read_text())
        evidence = json.dumps(report["findings"])
        other = markers["evil-b" if name == "evil-a" else "evil-a"]
        assert marker in evidence and other not in evidence  # each report is its own
        assert not Path(marker).exists()
    assert sessions() == []
