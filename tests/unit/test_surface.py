"""The public surface is small and deliberate; the worker imports nothing host-only."""

from __future__ import annotations

import subprocess
import sys

import pytest

import runner
from runner.errors import untrusted_text
from runner.policy import Policy, Runtime


def test_all_is_the_public_surface() -> None:
    assert runner.__all__ == sorted(
        [
            "AirlockError",
            "BomError",
            "DeadlineExceeded",
            "EngineError",
            "EvalResult",
            "Event",
            "Finding",
            "ImageError",
            "IntegrityError",
            "Observer",
            "evaluate",
            "InputError",
            "LimitExceeded",
            "ModelInfo",
            "ModelLoadError",
            "Policy",
            "Report",
            "Runtime",
            "Sandbox",
            "SandboxError",
            "SandboxPool",
            "Zygote",
            "SandboxInfo",
            "Server",
            "Severity",
            "Signature",
            "TensorSummary",
            "UsageError",
            "Verdict",
            "WorkerCrashed",
        ]
    )
    for name in runner.__all__:
        assert getattr(runner, name) is not None
    with pytest.raises(AttributeError):
        _ = runner.WorkerClient  # type: ignore[attr-defined]


def test_all_matches_the_public_names_the_package_really_has() -> None:
    """In a fresh interpreter, after every exported name is resolved: the public names in the
    package's namespace (its subpackages aside) are exactly __all__, and each is defined in
    Airlock's own code."""
    code = (
        "import types, runner\n"
        "for n in runner.__all__: getattr(runner, n)\n"
        "public = {n for n, v in vars(runner).items() if not n.startswith('_')\n"
        "          and not isinstance(v, types.ModuleType)}\n"
        "extra, missing = public - set(runner.__all__), set(runner.__all__) - public\n"
        "assert not extra and not missing, (sorted(extra), sorted(missing))\n"
        "foreign = [n for n in runner.__all__\n"
        "           if not getattr(runner, n).__module__.startswith('runner.')]\n"
        "assert not foreign, foreign\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_error_is_in_the_tree_and_exported() -> None:
    from runner import errors

    classes = [
        v
        for k, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, Exception) and not k.startswith("_")
    ]
    assert len(classes) > 10
    for cls in classes:
        assert cls.__module__ == "runner.errors"
        assert issubclass(cls, errors.AirlockError), cls
        assert cls.__name__ in runner.__all__ and getattr(runner, cls.__name__) is cls
        assert cls is errors.AirlockError or f"── {cls.__name__} " in (errors.__doc__ or "")


def test_worker_imports_nothing_host_only() -> None:
    code = (
        "import sys\n"
        "import runner.worker.server, runner.worker.loaders, runner.worker.__main__\n"
        "bad = [m for m in ('docker', 'rich', 'typer', 'pydantic', 'psutil', 'runner.cli',\n"
        "       'runner.controller.sandbox', 'runner.controller.engine', 'torch',\n"
        "       'onnxruntime') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_policy_is_strict_and_sizes_pids_per_runtime() -> None:
    assert Policy().effective_pids < Policy(runtime=Runtime.RUNSC).effective_pids
    assert Policy(pids=64, runtime=Runtime.RUNSC).effective_pids == 64
    with pytest.raises(ValueError, match="extra"):
        Policy(memory=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Policy(memory_bytes=1)


def test_untrusted_text_is_one_bounded_printable_line() -> None:
    text = untrusted_text("a\x1b[31mred\nline two\x00" + "x" * 1000, limit=50)
    assert "\n" not in text and "\x1b" not in text and "\x00" not in text
    assert len(text) == 50


def test_parse_bytes() -> None:
    from runner.cli.options import parse_bytes

    assert parse_bytes("512m") == 512 << 20
    assert parse_bytes("2g") == 2 << 30
    assert parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes("4096") == 4096


def test_cli_usage_errors_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "scan", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "m.onnx",
            "--memory",
            "lots",
            "--input",
            "x.npy",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "not a size" in proc.stderr
