"""Progress for batch evaluation, on stderr: a live bar on a terminal, plain lines otherwise.
Model names and errors came from the models: neutralised, and never read as markup."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from runner.batch.evaluation import EvalResult, Observer
from runner.cli.output import shown


class ConsoleObserver(Observer):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.current: list[str] = []
        self.done = 0
        self.total = 0
        self.start = time.monotonic()

    def started(self, total: int, skipped: int) -> None:
        self.total = total
        if skipped:
            self.console.print(
                f"resume: skipping {skipped} model(s) already in results.jsonl",
                markup=False,
                highlight=False,
            )
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]eval"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.description}", markup=False),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("", total=total)
        else:
            self.console.print(f"eval: {total} model(s) to evaluate", markup=False, highlight=False)

    def _describe(self) -> str:
        names = ", ".join(self.current[:3]) + (" …" if len(self.current) > 3 else "")
        return f"running: {names}" if names else ""

    def model_started(self, path: Path) -> None:
        self.current.append(shown(path.name, 60))
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=self._describe())

    def model_finished(self, result: EvalResult) -> None:
        name = shown(Path(result.path).name, 60)
        if name in self.current:
            self.current.remove(name)
        self.done += 1
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=1, description=self._describe())
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        extra = f" ({shown(result.error, 600)})" if result.error else ""
        if result.repo_id:  # a cached Hugging Face repository: its id and revision
            name = shown(f"{result.repo_id}@{(result.revision or '')[:12]}", 80)
        self.console.print(
            f"[{self.done}/{self.total}] {result.verdict.value:<10} {name} "
            f"{result.seconds:.1f}s, eta {eta:.0f}s{extra}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def is_terminal() -> bool:
    return sys.stderr.isatty()
