"""Batch throughput at --jobs 2 on checkpoints of the size people evaluate: four torch files of
100 MB or more (a state dict .pt, a state dict .bin, a pickled full module, a TorchScript
module) and two small Hugging Face repositories, through runner.evaluate with the default
policy, against loading the same models once each in-process (no isolation at all). Issue 17:
"today about 9 models a minute; target at least 4x at --jobs 2"."""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import runner
from tests import hf_repos

BEFORE_MODELS_PER_MIN = 9.0  # the figure from issue 17 ("today about 9 models a minute")
JOBS = 2
WIDTH = 5200  # a 5200 x 5200 float32 Linear: 108 MB


def _module(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, WIDTH)
    ).eval()


def _state(seed: int, mib: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    n = 8
    rows = (mib << 20) // 4 // 1024 // n
    return {f"encoder.layer.{i}.weight": torch.randn(rows, 1024, generator=g) for i in range(n)}


def _build(root: Path) -> dict[str, tuple[str, Path]]:
    """{name: (kind, path)}; the kind says how the in-process baseline loads it."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # no progress bars or load reports in the table
    transformers.logging.disable_progress_bar()

    root.mkdir(mode=0o755)
    built: dict[str, tuple[str, Path]] = {}
    sd = root / "state_dict.pt"
    torch.save({"state_dict": _state(1, 110), "epoch": 3}, sd)
    built["state_dict.pt"] = ("state_dict", sd)
    bin_ = root / "weights.bin"
    torch.save(_state(2, 120), bin_)
    built["weights.bin"] = ("state_dict", bin_)
    full = root / "full_module.pt"
    torch.save(_module(3), full)
    built["full_module.pt"] = ("full_module", full)
    scripted = root / "scripted.pt"
    torch.jit.script(_module(4)).save(str(scripted))
    built["scripted.pt"] = ("torchscript", scripted)
    built["hf-encoder"] = ("huggingface", hf_repos.encoder(root / "hf-encoder"))
    built["hf-classifier"] = ("huggingface", hf_repos.classifier(root / "hf-classifier", 1))
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return built


def _load(kind: str, path: Path) -> None:
    import torch

    if kind == "state_dict":
        torch.load(path, weights_only=True)
    elif kind == "full_module":
        torch.load(path, weights_only=False)
    elif kind == "torchscript":
        torch.jit.load(str(path))
    else:  # the class its config names, as the sandbox's loader picks it
        import transformers

        arch = transformers.AutoConfig.from_pretrained(path).architectures[0]
        getattr(transformers, arch).from_pretrained(path)


def _in_process(built: dict[str, tuple[str, Path]]) -> dict[str, float]:
    import transformers  # noqa: F401  (imported before the clock: the libraries are warm)

    times = {}
    for name, (kind, path) in built.items():
        start = time.perf_counter()
        _load(kind, path)
        times[name] = time.perf_counter() - start
    return times


def _phases(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """{model file or directory name: its report's phases}, from out_dir/reports/*.json, each
    with the CPU the sandbox's cgroup spent in it where the report measured that."""
    found = {}
    for f in sorted((out_dir / "reports").glob("*.json")):
        rep = json.loads(f.read_text())
        per_phase = (rep.get("resources") or {}).get("per_phase") or []
        cpu = {ph["phase"]: ph["cpu_seconds"] for ph in per_phase}
        phases = [{**p, "cpu_seconds": cpu.get(p["name"])} for p in rep.get("phases", [])]
        found[Path(rep["model"]["path"]).name] = phases
    return found


def _phase_text(phases: list[dict[str, Any]], seconds: float | None) -> str:
    """The phases, with cpu_seconds where the report has them, and the time in none of them."""
    parts = []
    for p in phases:
        cpu = f" (cpu {p['cpu_seconds']:.2f})" if p.get("cpu_seconds") is not None else ""
        parts.append(f"{p['name']} {p['seconds']:.2f}{cpu}")
    if seconds is not None:
        parts.append(f"rest {seconds - sum(p['seconds'] for p in phases):.2f}")
    return " · ".join(parts)


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent (user, nice, system, irq, softirq) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _engine_cpu() -> float:
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.info["name"] in ("dockerd", "containerd") and p.info["cpu_times"] is not None:
            t = p.info["cpu_times"]
            total += t.user + t.system
    return total


def _cpu_now() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "machine": _machine_cpu(),
        "host controller": me.ru_utime + me.ru_stime,
        "host children (strace, pre-flight readers)": kids.ru_utime + kids.ru_stime,
        "engine (dockerd, containerd)": _engine_cpu(),
    }


def _cpu_split(
    before: dict[str, float], after: dict[str, float], out_dir: Path
) -> dict[str, float]:
    """Where the batch's CPU went: the sandboxes' own cgroups by phase (from the reports), the
    host's controller, its children, the engine, and the rest of the machine (the zygote, the
    shims, the kernel's work for them)."""
    split = {k: after[k] - before[k] for k in before}
    sandboxes: dict[str, float] = {}
    for f in (out_dir / "reports").glob("*.json"):
        for ph in (json.loads(f.read_text()).get("resources") or {}).get("per_phase") or []:
            key = f"sandboxes: {ph['phase']}"
            sandboxes[key] = sandboxes.get(key, 0.0) + float(ph["cpu_seconds"])
    machine = split.pop("machine")
    split.update(sandboxes)
    split["rest (the zygote, shims, kernel)"] = machine - sum(split.values())
    split["machine"] = machine
    return split


def _size(path: Path) -> int:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files)


def _per_model(
    built: dict[str, tuple[str, Path]], local: dict[str, float], results: list[Any], out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Each model's size, in-process load time, time in the batch, verdict and phases."""
    by_name = {Path(r.path).name: r for r in results}
    phases = _phases(out_dir)
    rows = {}
    for name, (_, path) in built.items():
        r = by_name.get(name)
        rows[name] = {
            "size_bytes": _size(path),
            "in_process_s": local[name],
            "seconds": r.seconds if r else None,
            "verdict": r.verdict.value if r else None,
            "phases": phases.get(name, []),
        }
    return rows


def test_batch_throughput_on_large_checkpoints(
    tmp_path: Path, record: Callable[[str, dict[str, object]], None]
) -> None:
    built = _build(tmp_path / "models")
    local = _in_process(built)
    base = sum(local.values())
    out_dir = tmp_path / "out"
    cpu_before = _cpu_now()
    start = time.perf_counter()
    results = list(runner.evaluate([p for _, p in built.values()], jobs=JOBS, out_dir=out_dir))
    took = time.perf_counter() - start
    cpu = _cpu_split(cpu_before, _cpu_now(), out_dir)
    n = len(built)
    per_min, base_per_min = n / took * 60, n / base * 60
    per_model = _per_model(built, local, results, out_dir)
    print(f"\n{n} models (4 torch files of 100 MB or more, 2 small HF repositories), --jobs {JOBS}")
    print(f"{'model':<15} {'MB':>6} {'in-proc s':>9} {'sandbox s':>9} {'verdict':<10} phases (s)")
    for name, m in per_model.items():
        print(
            f"{name:<15} {m['size_bytes'] / 1e6:>6.1f} {m['in_process_s']:>9.2f} "
            f"{m['seconds'] or float('nan'):>9.2f} {m['verdict'] or '-':<10} "
            f"{_phase_text(m['phases'], m['seconds'])}"
        )
    print(f"{'mode':<22} {'seconds':>8} {'models/min':>11} {'x before (9/min)':>17}")
    print(f"{'in-process':<22} {base:>8.2f} {base_per_min:>11.1f} {'-':>17}")
    print(
        f"{'--jobs ' + str(JOBS):<22} {took:>8.2f} {per_min:>11.1f} "
        f"{per_min / BEFORE_MODELS_PER_MIN:>16.2f}x"
    )
    print(f"sandboxed batch / in-process: {took / base:.1f}x the time")
    print("CPU seconds of the batch, by where they went:")
    for what, seconds in cpu.items():
        print(f"  {what:<44} {seconds:>7.2f}")
    # a model that failed (an error verdict) would count as fast: no figure is recorded then
    assert len(results) == n
    assert all(r.verdict is runner.Verdict.CLEAN for r in results), [
        (r.path, r.verdict, r.error) for r in results
    ]
    record(
        "batch_throughput",
        {
            "models": n,
            "jobs": JOBS,
            "seconds": took,
            "models_per_min": per_min,
            "before_models_per_min": BEFORE_MODELS_PER_MIN,
            "ratio_to_before": per_min / BEFORE_MODELS_PER_MIN,
            "in_process_s": base,
            "in_process_models_per_min": base_per_min,
            "time_vs_in_process": took / base,
            "per_model": per_model,
            "cpu_seconds": cpu,
        },
    )
