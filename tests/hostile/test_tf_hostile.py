"""Hostile SavedModels in the TensorFlow image (tests/hostile/tf_hostile.py): each contained
(no marker on the host, the host's files unchanged, no container left) and detected: the
host's finding (AL970, the graph's WriteFile, SaveV2 or DumpTensor, or a TF1 saver's restore
op that writes at load) beside the sandbox's (AL302, the file written in scratch)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

import runner
from tests.fixtures import tf_models
from tests.hostile.test_corpus import _containers, _snapshot
from tests.hostile.tf_hostile import HOSTILE

pytestmark = pytest.mark.skipif(not tf_models.have_tensorflow(), reason="needs tensorflow")
MARKER = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
KINDS = [h for h in HOSTILE if h.dynamic]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tf-hostile")
    (d / "canary.txt").write_text("the host's file, unchanged\n")
    return tf_models.build([h.kind for h in KINDS], d, MARKER)


def test_graph_file_ops_are_contained_and_detected(
    built: dict[str, Path], tensorflow_image: tuple[str, str]
) -> None:
    root = next(iter(built.values())).parent
    before = _snapshot(root)
    for h in KINDS:
        sb = runner.Sandbox(built[h.kind])
        with sb:
            sb.infer({"x": np.ones((2, 2), np.float32)})
        report = sb.report()
        assert not list(Path(MARKER).parent.glob(Path(MARKER).name + "*")), "a marker on the host"
        assert _snapshot(root) == before, "host files changed"
        assert _containers(sb.session) == []
        ids = {f.rule_id for f in report.findings}
        assert h.static | h.dynamic <= ids, (h.kind, sorted(ids))
        assert report.verdict is runner.Verdict.SUSPICIOUS, (h.kind, sorted(ids))
        static = [e for f in report.findings if f.rule_id == "AL970" for e in f.evidence]
        dynamic = [e for f in report.findings if f.rule_id == "AL302" for e in f.evidence]
        assert any(h.where in e for e in static), static
        assert any(MARKER in e for e in dynamic), dynamic
