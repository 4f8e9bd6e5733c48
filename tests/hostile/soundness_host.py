"""Hostile fixtures that try to crash the host side, and the containment checks they share with
tests/hostile/test_soundness_output.py.

Each payload runs inside the sandbox only and is harmless outside it too: it touches nothing
but its own worker (the gRPC handler table, the data plane's writer, the description), writes
nothing outside /tmp, and bounds its loops and allocations.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import runner
from runner.controller import sessions
from tests.fixtures import hostile
from tests.hostile.test_corpus import _containers, _snapshot

# what must never reach a terminal: ESC, the other C0 controls but newline, DEL, C1 (as UTF-8),
# bidi controls and line separators (as UTF-8)
INJECTION = re.compile(
    rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]"
    rb"|\xd8\x9c"
)

DOUBLE = """
import torch

class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2

model = Double()
"""

# The worker's gRPC handler for Describe swapped for one that answers raw bytes: a reply whose
# first input's name is not UTF-8, followed by a length that runs past the end.
GARBLED_DESCRIBE = (
    r"""
import gc, grpc

GARBAGE = b"\x12\x08\x0a\x06\xff\xfe\x1b[2J" + b"\x12\xff\xff\xff\x0f"
METHOD = "/airlock.worker.v1.Worker/Describe"

def answer(request, context):
    return GARBAGE

handler = grpc.unary_unary_rpc_method_handler(
    answer, request_deserializer=None, response_serializer=None
)
for o in gc.get_objects():
    if isinstance(o, dict) and METHOD in o:
        o[METHOD] = handler
"""
    + DOUBLE
)

# The worker's description made to list 100000 inputs with sizes no tensor has (2**62, -7,
# 2**63 - 1) and names that carry escape sequences and a bidi override.
DESCRIPTION_BOMB = (
    r"""
import sys

server = sys.modules["runner.worker.server"]

def _specs(specs, out):
    for i in range(100000):
        out.add(name=f"\x1b[2J\x1b[1;32min{i}\u202e", dtype="float32", shape=[2**62, -7, 2**63 - 1])

server._specs = _specs
"""
    + DOUBLE
)

# The worker's data-plane writer swapped: each call gets another malformed reply (sizes that
# overflow, a name that is not UTF-8, more outputs than any model has, shared memory outside
# the window, bytes that do not fit the shape), and the sixth a length that lies, then silence.
GARBLED_FRAMES = (
    r"""
import struct, sys, time
from runner.worker.shared._proto import worker_pb2 as pb

dp = sys.modules["runner.worker.dataplane"]
original = dp._reply

def _payloads():
    r = pb.InferReply()
    r.outputs.add(name="y", dtype="float32", shape=[0, 2**62, 2**62])
    yield r.SerializeToString()
    yield b"\x0a\x08\x0a\x06\xff\xfe\x1b[2J"
    r = pb.InferReply()
    for i in range(1100):
        r.outputs.add(name=f"o{i}", dtype="uint8", shape=[0])
    yield r.SerializeToString()
    r = pb.InferReply()
    t = r.outputs.add(name="y", dtype="float32", shape=[4], in_shm=True)
    t.shm_offset, t.shm_length = 2**63, 16
    yield r.SerializeToString()
    r = pb.InferReply()
    r.outputs.add(name="y", dtype="float32", shape=[1 << 20], data=b"\0" * 16)
    yield r.SerializeToString()

PAYLOADS = list(_payloads())
calls = [0]

def _reply(conn, status, payload):
    i = calls[0]
    calls[0] += 1
    if i < len(PAYLOADS):
        return original(conn, 0, PAYLOADS[i])
    conn.sendmsg([struct.pack("<BI", 0, 1 << 20) + b"\x0a\x02"])
    time.sleep(60)

dp._reply = _reply
"""
    + DOUBLE
)
GARBLED_REPLIES = 5  # calls answered with a malformed reply before the one that lies

# A worker that dies leaving a huge, garbled log tail: escape sequences, OSC hyperlinks, C1
# controls, bidi overrides, invalid UTF-8, carriage returns and backspaces, a fake verdict line,
# and a last line with no newline (bounded: about 2.5 MiB).
GARBLED_TAIL = r"""
import os

junk = (
    b"\x1b[2J\x1b[H\x1b[1;32mverdict   CLEAN\x1b[0m\r\n"
    + b"\x1b]8;;https://evil.invalid/\x07click\x1b]8;;\x07"
    + "\u202eNAELC\u2028".encode()
    + b"\xc2\x9b2J\xff\xfe\x08\x08\x08"
    + b"A" * 200
    + b"\n"
)
for _ in range(8192):
    os.write(2, junk)
os.write(2, b"\x1b[2J" * 20000 + b"verdict CLEAN, no newline at the end")
os._exit(3)
"""


def onnx_many_inputs(d: Path, count: int = 1100) -> Path:
    """An ONNX file whose graph declares `count` inputs of a size no tensor has: no code runs,
    the description alone is out of bounds."""
    from onnx import TensorProto, helper

    names = [f"in{i}" for i in range(count)]
    graph = helper.make_graph(
        [helper.make_node("Identity", [names[0]], ["y"])],
        "many",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1 << 40]) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 40])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = d / "many.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def pickle_of(code: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        return hostile.write(d / "payload.pkl", hostile.code_pickle(code, "model"))

    return build


# --- containment, seen from the host ------------------------------------------------------------

snapshot, containers = _snapshot, _containers  # one implementation: tests/hostile/test_corpus.py


def leftovers(session: str) -> list[str]:
    """What a sandbox left on the host: its container, its directory, a mount under it."""
    found = [f"container {c}" for c in containers(session)]
    root = sessions.tmp_base() / f"{sessions.DIR_PREFIX}{session}"
    if root.exists():
        found.append(f"directory {root}")
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line}" for line in mounts.splitlines() if f"airlock-{session}" in line]
    return found


@dataclass
class Run:
    report: runner.Report
    errors: list[BaseException] = field(default_factory=list)
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)


def contained_run(
    tmp_path: Path,
    build: Callable[[Path], Path],
    calls: int = 0,
    x: np.ndarray | None = None,
    policy: runner.Policy | None = None,
) -> Run:
    """Open the model, make `calls` calls (going on after a failed one while the sandbox is
    open), take the report; then check from the host that nothing escaped and nothing is left."""
    models = tmp_path / "m"
    models.mkdir()
    (tmp_path / "canary.txt").write_text("the host's file, unchanged\n")
    path = build(models)
    before = snapshot(tmp_path)
    marker = Path(f"/tmp/airlock-soundness-{uuid.uuid4().hex}")
    sb = runner.Sandbox(path, policy or runner.Policy())
    errors: list[BaseException] = []
    outputs: list[dict[str, np.ndarray]] = []
    try:
        with sb:
            for _ in range(calls):
                try:
                    outputs.append(sb.infer(np.ones((2, 4), np.float32) if x is None else x))
                except runner.AirlockError as e:
                    errors.append(e)
                    if sb._run is not None and sb._run.collected.killed_by_host:
                        break  # the sandbox was killed: nothing more to call
    except runner.AirlockError as e:
        errors.append(e)
    report = sb.report()
    assert not marker.exists()
    assert snapshot(tmp_path) == before, "host files changed"
    assert leftovers(sb.session) == []
    return Run(report, errors, outputs)


def complete(report: runner.Report) -> None:
    """The report has its phases, resources and evidence, and says why it ended when it did."""
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.resources is not None and report.resources.timeline
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert report.findings and all(f.evidence for f in report.findings)
