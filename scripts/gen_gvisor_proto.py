"""Generate the Python code for gVisor's trace point messages (runner/telemetry/gvisor/proto,
copied from google/gvisor, Apache-2.0) into runner/telemetry/gvisor/_proto.

The protos import each other by their path in gVisor's tree (pkg/sentry/seccheck/points/...):
the generated modules' absolute imports of each other are made package-relative.
Run: .venv/bin/python scripts/gen_gvisor_proto.py [OUT_DIR]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "runner" / "telemetry" / "gvisor" / "proto"
POINTS = "pkg/sentry/seccheck/points"
NAMES = ("common", "syscall", "sentry", "container")
OUT_DIR = ROOT / "runner" / "telemetry" / "gvisor" / "_proto"
_IMPORT = re.compile(r"^from pkg\.sentry\.seccheck\.points import (\w+_pb2)", re.M)


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(f"{PROTO_ROOT / POINTS / n}.proto" for n in NAMES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    nested = out_dir / POINTS
    for n in NAMES:
        for ext in ("_pb2.py", "_pb2.pyi"):
            src = nested / f"{n}{ext}"
            text = _IMPORT.sub(r"from . import \1", src.read_text())
            # generated stubs are not held to the project's strict mypy (pyproject's mypy
            # settings exclude the other generated packages the same way)
            text = "# mypy: ignore-errors\n" + text
            (out_dir / src.name).write_text(text)
            src.unlink()
    for d in (nested, nested.parent, nested.parent.parent, out_dir / "pkg"):
        d.rmdir()
    (out_dir / "__init__.py").write_text(
        '"""Generated from runner/telemetry/gvisor/proto; run scripts/gen_gvisor_proto.py."""\n'
    )


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)
