"""Latency: the median of timed runs after warm-up, several models alternated in one process."""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils.runtime import sync
from ..utils.validate import check_int


# Runs spread wider than this (slowest / fastest) say the machine was busy while timing.
BUSY_SPREAD = 1.5


@dataclass
class Latency:
    """Wall-clock time of one forward pass (eval mode, ``torch.inference_mode``), in milliseconds."""

    median_ms: float
    runs: int
    warmup: int
    threads: int
    device: str
    times_ms: List[float] = field(default_factory=list)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms, default=self.median_ms)

    @property
    def max_ms(self) -> float:
        return max(self.times_ms, default=self.median_ms)

    @property
    def busy(self) -> bool:
        """True when the runs spread so widely (slowest > 1.5 x fastest) that other work on the
        machine was likely competing: the median is then not a figure to trust."""
        return self.min_ms > 0 and self.max_ms / self.min_ms > BUSY_SPREAD

    def to_dict(self) -> Dict[str, Any]:
        return {
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "busy": self.busy,
            "runs": self.runs,
            "warmup": self.warmup,
            "threads": self.threads,
            "device": self.device,
            "mode": "eval, torch.inference_mode",
            "times_ms": list(self.times_ms),
        }

    def spread(self) -> str:
        """'min 1.02 / median 1.10 / max 1.31 ms'."""
        return f"min {self.min_ms:.2f} / median {self.median_ms:.2f} / max {self.max_ms:.2f} ms"

    def describe(self) -> str:
        return (
            f"{self.spread()} of {self.runs} runs after {self.warmup} warm-up, "
            f"{self.threads} thread{'s' if self.threads != 1 else ''}, {self.device}, eval + inference_mode"
        )

    def warning(self) -> str:
        """The warning to print when :attr:`busy` (empty otherwise)."""
        if not self.busy:
            return ""
        return (
            f"the timed runs spread from {self.min_ms:.2f} to {self.max_ms:.2f} ms (median {self.median_ms:.2f}): "
            "the machine looks busy, so the latency figures are not reliable. Hint: rerun on a quiet machine, "
            "with more --runs, or pin --threads."
        )


def check_timing_args(runs: Any, warmup: Any, threads: Any, who: str) -> None:
    check_int(runs, f"{who}: runs", 1)
    check_int(warmup, f"{who}: warmup", 0)
    if threads is not None:
        check_int(threads, f"{who}: threads", 1)


def measure(
    models: Sequence[nn.Module],
    inputs: Tuple[Any, ...],
    device: torch.device,
    *,
    runs: int,
    warmup: int,
    threads: Optional[int],
    console: Any = None,
) -> List[Latency]:
    """Time ``models`` on the same inputs, alternating them run by run (ABAB...; BA on odd runs).

    Each model is put in eval mode for the timing and its modules' ``training`` flags are
    restored afterwards; the thread count is restored as well.
    """
    previous_threads = torch.get_num_threads()
    flags = [[(m, m.training) for m in model.modules()] for model in models]
    times: List[List[float]] = [[] for _ in models]
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        for model in models:
            model.eval()
        with ExitStack() as stack:
            progress = None
            task = None
            if console is not None and getattr(console, "is_terminal", False):
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                progress = stack.enter_context(
                    Progress(
                        TextColumn("timing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True,
                    )
                )
                task = progress.add_task("timing", total=(warmup + runs) * len(models))
            stack.enter_context(torch.inference_mode())
            for i in range(warmup + runs):
                order = list(range(len(models)))
                if i % 2:
                    order.reverse()
                for k in order:
                    sync(device)
                    start = time.perf_counter()
                    models[k](*inputs)
                    sync(device)
                    elapsed = (time.perf_counter() - start) * 1e3
                    if i >= warmup:
                        times[k].append(elapsed)
                    if progress is not None:
                        progress.advance(task)
    finally:
        torch.set_num_threads(previous_threads)
        for saved in flags:
            for m, training in saved:
                m.training = training
    return [
        Latency(statistics.median(t), runs, warmup, used_threads, str(device), t) for t in times
    ]
