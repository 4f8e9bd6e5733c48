"""Cold start: `docker run --rm --network none IMAGE` running `true` (the floor) against
Sandbox open-to-ready and open-to-first-inference, for a small ONNX and a small TorchScript
model, under runc and runsc; then each torch-family model the issue names (TorchScript, a full
module, a state dict with an architecture file, a small transformers repository) opened cold
and warm (its worker forked from a zygote) under runc. The targets compare open-to-first-
inference with the floor plus the in-process load time; the warm target is the worst family."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import runner
from runner.controller import images as _image
from runner.controller.zygote import Zygote
from tests import hf_repos
from tests.fixtures import models

REPEATS = {"runc": 5, "runsc": 3}


def _floor(tag: str, runtime: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--runtime",
            runtime,
            "--entrypoint",
            "true",
            tag,
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def _in_process_load(kind: str, path: Path, arch: Path | None = None) -> float:
    """In-process, with the libraries warm: what loading this model costs without a sandbox."""
    start = time.perf_counter()
    if kind == "onnx":
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return time.perf_counter() - start
    import torch

    if kind == "torchscript":
        torch.jit.load(str(path))
    elif kind == "full_module":
        torch.load(path, weights_only=False)
    elif kind == "state_dict_arch":
        assert arch is not None
        namespace: dict[str, object] = {}
        exec(arch.read_text(), namespace)
        module = namespace["build_model"]()  # type: ignore[operator]
        module.load_state_dict(torch.load(path, weights_only=True))
    else:  # the tokenizer and the class the config names, as the sandbox's loader does
        import transformers

        transformers.AutoTokenizer.from_pretrained(path)
        name = transformers.AutoConfig.from_pretrained(path).architectures[0]
        getattr(transformers, name).from_pretrained(path)
    return time.perf_counter() - start


def _torch_family(
    root: Path, torchscript: Path, figures: dict[str, object]
) -> dict[str, dict[str, object]]:
    """Each torch-family kind opened cold and warm under runc: {runc_<kind>[_warm]: figures}.
    TorchScript's model, in-process load and cold open are those the first table measured."""
    import transformers

    transformers.logging.set_verbosity_error()
    x = models.sample_input()
    root.mkdir()
    full = models.full_module_pickle(root, x)
    sd = models.state_dict_with_architecture(root, x)
    repo = hf_repos.encoder(root / "hf-encoder")
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    kinds: dict[str, tuple[Path, Path | None]] = {
        "torchscript": (torchscript, None),
        "full_module": (full.path, None),
        "state_dict_arch": (sd.path, sd.architecture),
        "transformers": (repo, None),
    }
    n = REPEATS["runc"]
    ts = figures["runc_torchscript"]
    floor = float(ts["floor_s"])  # type: ignore[index]
    out: dict[str, dict[str, object]] = {}
    for kind, (path, arch) in kinds.items():
        if kind == "torchscript":
            load = float(ts["in_process_load_s"])  # type: ignore[index]
        else:
            _in_process_load(kind, path, arch)  # warm the libraries once
            load = statistics.median(_in_process_load(kind, path, arch) for _ in range(n))
            cold = statistics.median(_open(path, "runc", arch=arch)[1] for _ in range(n))
            out[f"runc_{kind}"] = {
                "floor_s": floor,
                "in_process_load_s": load,
                "open_to_first_inference_s": cold,
                "ratio_vs_floor_plus_load": cold / (floor + load),
            }
        out[f"runc_{kind}_warm"] = {"floor_s": floor, "in_process_load_s": load}
    with Zygote(runner.Policy()) as zygote:  # a fresh container each, its worker forked warm
        for kind, (path, arch) in kinds.items():
            runs = [_open(path, "runc", zygote, arch) for _ in range(n)]
            w = out[f"runc_{kind}_warm"]
            first = statistics.median(f for _, f in runs)
            load = float(w["in_process_load_s"])  # type: ignore[arg-type]
            w.update(
                open_to_ready_s=statistics.median(r for r, _ in runs),
                open_to_first_inference_s=first,
                ratio_vs_floor_plus_load=first / (floor + load),
                runs_first_inference_s=[f for _, f in runs],
            )
    cold_of = {**out, "runc_torchscript": ts}
    print(f"\n{'runc':<7} {'torch family':<16} {'in-proc load':>12} {'cold':>15} {'warm':>15}")
    for kind in kinds:
        c, w = cold_of[f"runc_{kind}"], out[f"runc_{kind}_warm"]
        print(
            f"{'runc':<7} {kind:<16} {w['in_process_load_s']:>12.3f} "
            f"{c['open_to_first_inference_s']:>6.3f}s {c['ratio_vs_floor_plus_load']:>6.2f}x "
            f"{w['open_to_first_inference_s']:>6.3f}s {w['ratio_vs_floor_plus_load']:>6.2f}x"
        )
    return out


def _open(
    path: Path, runtime: str, zygote: Zygote | None = None, arch: Path | None = None
) -> tuple[float, float]:
    x = models.sample_input(2)
    start = time.perf_counter()
    policy = runner.Policy(runtime=runner.Runtime(runtime))
    with runner.Sandbox(path, policy, zygote=zygote, architecture=arch) as sb:
        ready = time.perf_counter() - start
        if path.is_dir():
            sb.infer_text(["a first inference"])
        else:
            sb.infer(x)
        first = time.perf_counter() - start
    assert (zygote is not None) == any(n.startswith("warm start: the worker") for n in sb.notes)
    assert sb.report().verdict is runner.Verdict.CLEAN
    return ready, first


def test_cold_start(tmp_path: Path, record: Callable[[str, dict[str, object]], None]) -> None:
    tag, _ = _image.require_current()
    x = models.sample_input()
    paths = {
        "onnx": models.onnx_model(tmp_path, x).path,
        "torchscript": models.torchscript_model(tmp_path, x).path,
    }
    for kind, p in paths.items():
        _in_process_load(kind, p)  # warm the libraries once
    figures: dict[str, object] = {}
    print(
        f"\n{'runtime':<7} {'model':<12} {'floor s':>8} {'in-proc load':>12} {'ready s':>8} "
        f"{'first inf s':>11} {'ratio':>7}"
    )
    for runtime, n in REPEATS.items():
        floor = statistics.median(_floor(tag, runtime) for _ in range(n))
        for kind, path in paths.items():
            load = statistics.median(_in_process_load(kind, path) for _ in range(n))
            runs = [_open(path, runtime) for _ in range(n)]
            ready = statistics.median(r for r, _ in runs)
            first = statistics.median(f for _, f in runs)
            ratio = first / (floor + load)
            figures[f"{runtime}_{kind}"] = {
                "floor_s": floor,
                "in_process_load_s": load,
                "open_to_ready_s": ready,
                "open_to_first_inference_s": first,
                "ratio_vs_floor_plus_load": ratio,
            }
            print(
                f"{runtime:<7} {kind:<12} {floor:>8.3f} {load:>12.3f} {ready:>8.3f} "
                f"{first:>11.3f} {ratio:>6.2f}x"
            )
    figures.update(_torch_family(tmp_path / "family", paths["torchscript"], figures))
    with runner.SandboxPool(size=1) as pool:
        claims = []
        for _ in range(REPEATS["runc"]):
            sb = pool.sandbox(paths["onnx"])
            start = time.perf_counter()
            pool_wait = time.perf_counter()
            with sb:
                sb.infer(models.sample_input(2))
                claims.append(time.perf_counter() - start)
            del pool_wait
            time.sleep(1.0)  # let the replacement warm up
        first = statistics.median(claims)
        floor = figures["runc_onnx"]["floor_s"]  # type: ignore[index]
        load = figures["runc_onnx"]["in_process_load_s"]  # type: ignore[index]
        figures["runc_onnx_pool"] = {
            "open_to_first_inference_s": first,
            "ratio_vs_floor_plus_load": first / (floor + load),
        }
        print(
            f"{'runc':<7} {'onnx (pool)':<12} {floor:>8.3f} {load:>12.3f} {'-':>8} "
            f"{first:>11.3f} {first / (floor + load):>6.2f}x"
        )
    record("coldstart", figures)
