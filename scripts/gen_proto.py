"""Generate the Python code for proto/airlock/worker/v1/worker.proto into OUT_DIR.

`make proto` runs this into runner/worker/shared/_proto, and with --serve, the Open Inference
Protocol's messages (proto/airlock/serve/v2) into runner/serve/v2/_proto (messages only: the
service is registered by hand under its original name); tests run it into a temp dir and
compare, so stale generated code fails the build. The generated gRPC module's absolute import
is made package-relative, so the code works wherever the worker package is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "airlock" / "worker" / "v1"
SERVE_DIR = ROOT / "proto" / "airlock" / "serve" / "v2"


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "worker.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    grpc_file = out_dir / "worker_pb2_grpc.py"
    text = grpc_file.read_text()
    text = text.replace(
        "import worker_pb2 as worker__pb2", "from . import worker_pb2 as worker__pb2"
    )
    grpc_file.write_text(text)
    (out_dir / "__init__.py").write_text('"""Generated from proto/; run `make proto`."""\n')


def generate_serve(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{SERVE_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(SERVE_DIR / "airlock_serve_v2.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_dir / "__init__.py").write_text('"""Generated from proto/; run `make proto`."""\n')


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        generate_serve(Path(sys.argv[2]))
    else:
        generate(Path(sys.argv[1]))
