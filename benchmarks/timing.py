"""How the benchmarks time one model against another: alternated in one process, the median of the
per-pair ratios (the drift of a shared machine moves both sides of a pair alike, so it cancels).

    plain_ms, octave_ms, ratio = alternate(lambda: plain(x), lambda: octave(x), iters=15)
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch


def _sync(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    a: Callable[[], object], b: Callable[[], object], iters: int, *, warmup: int = 2, reps: int = 1, device: Optional[torch.device] = None,
) -> tuple[float, float, float]:
    """Median ms per call of ``a`` and of ``b``, and the median of the per-pair ratios b / a.

    ``warmup`` pairs run first, untimed. Which side goes first alternates from pair to pair, so
    that neither always runs on a warmer cache. Each timed sample is ``reps`` calls; on a GPU
    (``device``) the clock is read only after the device's queued work is done. Runs under
    ``torch.inference_mode()``."""
    ta, tb, ratios = [], [], []
    with torch.inference_mode():
        for _ in range(warmup):
            a()
            b()
        for i in range(iters):
            pair = []
            for f in (a, b) if i % 2 == 0 else (b, a):
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(reps):
                    f()
                _sync(device)
                pair.append((time.perf_counter() - t0) * 1e3 / reps)
            da, db = pair if i % 2 == 0 else pair[::-1]
            ta.append(da)
            tb.append(db)
            ratios.append(db / da)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def time_one(f: Callable[[], object], iters: int) -> float:
    """Median ms of ``f()`` over ``iters`` calls after one to warm up, under ``torch.inference_mode()``."""
    with torch.inference_mode():
        f()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            f()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
