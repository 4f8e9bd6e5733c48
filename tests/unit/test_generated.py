"""Generated and bundled files match the scripts that produce them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_proto_code_is_fresh(tmp_path: Path) -> None:
    # protoc runs in a process of its own: in the suite's process, after torch, Keras and
    # llama.cpp have loaded their native libraries, grpc_tools' compiler crashed (SIGSEGV)
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True
    )
    committed = ROOT / "runner" / "worker" / "shared" / "_proto"
    for name in ("worker_pb2.py", "worker_pb2.pyi", "worker_pb2_grpc.py"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), (
            f"{name} is stale: run 'make proto'"
        )


def test_seccomp_profiles_are_fresh_and_deny_io_uring() -> None:
    from runner.telemetry.tracer import REFUSED

    gen = _load(ROOT / "sandbox_images" / "seccomp" / "generate.py")
    io_uring = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
    for traced, name in ((False, "airlock-strict.json"), (True, "airlock-traced.json")):
        text = (ROOT / "sandbox_images" / "seccomp" / name).read_text()
        assert text == gen.render(traced), f"{name} is stale: run 'make seccomp'"
        profile = json.loads(text)
        allowed = {
            n
            for rule in profile["syscalls"]
            if rule["action"] == "SCMP_ACT_ALLOW"
            for n in rule["names"]
        }
        assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
        # only the tracer may see (and refuse) them: without it, the kernel never does
        assert io_uring & allowed == (io_uring if traced else set())
        assert ("mount" in allowed) is traced
        assert ("pidfd_getfd" in allowed) is traced
    # what the traced profile lets through beyond the allow-list, the tracer refuses: a call the
    # profile denied with an errno would leave no record, one the tracer missed would run
    assert set(gen.OBSERVED) == set(REFUSED.split(","))


def test_examples_are_fresh(tmp_path: Path) -> None:
    ex = _load(ROOT / "examples" / "make_examples.py")
    assert (ROOT / "examples" / "tiny.onnx").read_bytes() == ex.tiny_onnx()
    assert (ROOT / "examples" / "payload.pkl").read_bytes() == ex.payload_pickle()
