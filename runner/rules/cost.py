"""What loading the model cost, measured from the host's cgroup samples, against what its size
warrants (AL508 memory, AL509 CPU).

The load window runs from the last sample before the load (the startup baseline: libraries are
imported and warmed before the model is read) to the first sample after it, so a load shorter
than the sampling interval is still measured. The thresholds have floors, so small files and
the libraries' own costs do not trigger, and grow with the model's size:

- memory: the window's peak above the baseline, over MEMORY_FLOOR and MEMORY_RATIO x the size;
- CPU: the window's CPU seconds, over CPU_FLOOR_S and CPU_PER_GIB_S per GiB of the model.

Measured benign loads (runc, 1 CPU; the host had hashed the file, so its pages were cached):
the test fixtures (ONNX, TorchScript, torch.save, safetensors, torch.package) grew 0 to 10 MiB
in under 0.1 s of CPU; a 100 MB torch.save 69 MiB, a 200 MB pickled module 201 MiB, a 200 MB
ONNX model 255 MiB in 0.5 s, 100 and 400 MB safetensors (mapped) 0 to 2 MiB. The largest is a
sixth of its memory threshold and a tenth of its CPU threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.rules.catalog import RuleName
from runner.telemetry.events import Phase
from runner.telemetry.resources import Sample

MIB = 1 << 20
GIB = 1 << 30
MEMORY_FLOOR = 512 * MIB
MEMORY_RATIO = 8
CPU_FLOOR_S = 5.0
CPU_PER_GIB_S = 30.0


@dataclass(frozen=True)
class LoadCost:
    """The load window's cost, as the host's cgroup samples show it."""

    model_bytes: int
    baseline_bytes: int  # memory at the last sample before the load
    peak_bytes: int  # the highest memory sample in the window
    cpu_seconds: float
    seconds: float
    samples: int  # samples in the window (the baseline's not counted)

    @property
    def growth_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    @property
    def memory_limit(self) -> int:
        return max(MEMORY_FLOOR, MEMORY_RATIO * self.model_bytes)

    @property
    def cpu_limit(self) -> float:
        return max(CPU_FLOOR_S, CPU_PER_GIB_S * self.model_bytes / GIB)


def load_cost(samples: Sequence[Sample], model_bytes: int) -> LoadCost | None:
    """The load window's cost; None when the samples do not reach past the start of loading."""
    loads = [i for i, s in enumerate(samples) if s.phase is Phase.LOAD]
    if loads:
        first, last = loads[0], loads[-1]
        base = samples[first - 1] if first > 0 else samples[first]
        window = list(samples[first : last + 2])  # the load's samples and the one after
    else:  # a load shorter than a sampling interval: it lies between startup and what follows
        starts = [i for i, s in enumerate(samples) if s.phase is Phase.STARTUP]
        if not starts or starts[-1] + 1 >= len(samples):
            return None
        base, window = samples[starts[-1]], [samples[starts[-1] + 1]]
    end = window[-1]
    return LoadCost(
        model_bytes=max(0, model_bytes),
        baseline_bytes=base.memory_bytes,
        peak_bytes=max(s.memory_bytes for s in window),
        cpu_seconds=max(0.0, end.cpu_seconds - base.cpu_seconds),
        seconds=max(0.0, end.time - base.time),
        samples=len(window),
    )


def cost_findings(cost: LoadCost | None) -> list[tuple[RuleName, str, list[str]]]:
    """AL508 and AL509, with the numbers, when the load cost past its thresholds."""
    if cost is None:
        return []
    out: list[tuple[RuleName, str, list[str]]] = []
    window = f"{cost.samples} sample(s) over {cost.seconds:.1f} s"
    if cost.growth_bytes > cost.memory_limit:
        out.append(
            (
                RuleName.LOAD_MEMORY_COST,
                f"loading took {_mib(cost.growth_bytes)} of memory for a file of "
                f"{_mib(cost.model_bytes)}",
                [
                    f"cgroup: memory rose from {cost.baseline_bytes} to {cost.peak_bytes} bytes "
                    f"while loading ({window}); the threshold for {cost.model_bytes} bytes "
                    f"of model is {cost.memory_limit}"
                ],
            )
        )
    if cost.cpu_seconds > cost.cpu_limit:
        out.append(
            (
                RuleName.LOAD_CPU_COST,
                f"loading took {cost.cpu_seconds:.1f} s of CPU for a file of "
                f"{_mib(cost.model_bytes)}",
                [
                    f"cgroup: {cost.cpu_seconds:.2f} CPU seconds while loading ({window}); "
                    f"the threshold for {cost.model_bytes} bytes of model is "
                    f"{cost.cpu_limit:.1f} s"
                ],
            )
        )
    return out


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"
