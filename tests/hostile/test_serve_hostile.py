"""A model that misbehaves only at its Nth request, served: TorchScript that reads
/proc/self/environ from its fourth call (tests.hostile.corpus). It answers until then; that
call's evidence is judged before its outputs go back, so the environment never reaches the
client; the model is quarantined with the finding, and tritonclient then gets UNAVAILABLE with
the reason. Every container is gone afterwards."""

from __future__ import annotations

from pathlib import Path

import docker
import numpy as np
import pytest

from runner.serve.app import Server
from runner.serve.backend import Unavailable
from tests.hostile.corpus import torchscript_fourth_call

pytestmark = pytest.mark.timeout(300)


def test_the_fourth_request_quarantines_the_model(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    model = torchscript_fourth_call(tmp_path, str(tmp_path / "marker"))
    x = np.ones((2, 4), np.float32)
    events: list[dict[str, object]] = []
    with Server(model, replicas=1, grpc_port=0, http_port=0, log=events.append) as server:
        ids = server.backend.containers()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        answered = 0
        for _ in range(4):  # it behaves until its fourth call (the worker may call it more)
            try:
                out = server.backend.infer({"x": x}, 30.0)
            except Unavailable as e:
                assert "AL303" in e.reason
                break
            np.testing.assert_array_equal(out["output"], x * 2)  # never the environment
            answered += 1
        assert answered < 4 and "AL303" in server.quarantined
        for _ in range(2):  # then any client's call
            inp = grpcclient.InferInput("x", [2, 4], "FP32")
            inp.set_data_from_numpy(x)
            with pytest.raises(InferenceServerException) as e:
                client.infer("model", [inp], client_timeout=30)
            assert "UNAVAILABLE" in str(e.value.status()) and "AL303" in e.value.message()
        client.close()
        assert "AL303" in server.quarantined
        assert not server.backend.ready()
    assert server.exit_code == 1
    assert any(ev.get("event") == "quarantined" for ev in events)
    report = server.backend.report()
    assert any(f["rule_id"] == "AL303" for c in report["closed"] for f in c["findings"])
    engine = docker.from_env()
    names = {c.id for c in engine.containers.list(all=True)}
    engine.close()
    assert not names & set(ids)


@pytest.mark.runsc
def test_under_runsc_the_sinks_evidence_is_judged_while_serving(tmp_path: Path) -> None:
    # gVisor's trace points keep the evidence in the host's sink, not in a log file: the
    # per-request judgement reads the sink so far, and the fourth call is caught before its
    # outputs go back, as under runc
    from runner import Policy, Runtime

    model = torchscript_fourth_call(tmp_path, str(tmp_path / "marker"))
    x = np.ones((2, 4), np.float32)
    policy = Policy(runtime=Runtime.RUNSC)
    with Server(model, policy, replicas=1, grpc_port=0, http_port=0, log=lambda e: None) as server:
        ids = server.backend.containers()
        answered = 0
        for _ in range(4):
            try:
                out = server.backend.infer({"x": x}, 60.0)
            except Unavailable as e:
                assert "AL303" in e.reason
                break
            np.testing.assert_array_equal(out["output"], x * 2)  # never the environment
            answered += 1
        assert answered < 4 and "AL303" in server.quarantined
    report = server.backend.report()
    closed = report["closed"]
    assert any(f["rule_id"] == "AL303" for c in closed for f in c["findings"])
    engine = docker.from_env()
    names = {c.id for c in engine.containers.list(all=True)}
    engine.close()
    assert not names & set(ids)
