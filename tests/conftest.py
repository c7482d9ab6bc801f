"""Helpers every test file shares, and the markers that split the fast loop from the full suite.

- ``zoo``: parametrized over the torchvision model zoo (``make test-zoo``);
- ``slow``: a whole-network check that takes seconds (full torchvision networks at real sizes).
``make test-fast`` runs everything else; ``make test`` runs all of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
from typing import Iterator, Optional, Union

import torch
from torch import Tensor, nn

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if hasattr(ctypes, "CDLL") else None


if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs one worker per core: one thread each
    torch.set_num_threads(1)
_THREADS = torch.get_num_threads()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_collected_at = [0]


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: collect after every test
        return _collected_at[0] + (1 << 40)


def pytest_runtest_teardown(item, nextitem):
    """Between tests: the thread count back to what the session started with (a test that sets
    it would otherwise slow every later one), and each test's models freed once they add up.
    A converted model is a GraphModule, which refers to itself through its graph: only the cycle
    collector frees it, and Python runs that by object counts, not bytes, so the zoo's networks
    piled up (2 GB per VGG; the suite was killed for memory at 24 GiB). A collection costs about
    0.3 s, so it runs when the process has grown by 1 GiB since the last; malloc_trim then hands
    the freed heap back to the system (glibc only)."""
    if torch.get_num_threads() != _THREADS:
        torch.set_num_threads(_THREADS)
    if _rss() - _collected_at[0] < (1 << 30):
        return
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
    _collected_at[0] = _rss()


def rel_err(got: Tensor, want: Tensor) -> float:
    """max |got - want| / max |want|: the relative error every oracle check bounds."""
    assert got.shape == want.shape, (tuple(got.shape), tuple(want.shape))
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()


def randomize_bn(
    model: nn.Module, seed: Union[int, torch.Generator] = 0, *, batches_tracked: Optional[int] = None
) -> nn.Module:
    """Give every BatchNorm1d / 2d / 3d in ``model`` (or ``model`` itself) non-trivial running statistics and
    affine weights, so that eval mode, folding and fusion really use them (and, if given, a batch
    counter). Returns ``model``."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                continue
            c = m.num_features
            if m.running_mean is not None:
                m.running_mean.copy_(torch.rand(c, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if batches_tracked is not None:
                    m.num_batches_tracked.fill_(batches_tracked)
            if m.weight is not None:
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen) - 0.5)
    return model


# Two settings under which the CPU rounds differently: oneDNN's kernels (blocked layouts, AMX /
# AVX-512 micro-kernels) with 2 threads, and PyTorch's own kernels on one thread. A test whose
# numbers come from training runs under both, so that a threshold tuned to one CPU's rounding
# fails here, not on the next machine (issue 21: three such tests failed on a machine of the same kind).
NUMERICS = {"onednn-2threads": (True, 2), "no-onednn-1thread": (False, 1)}


@contextlib.contextmanager
def cpu_numerics(name: str) -> Iterator[None]:
    """Run the block under the setting ``NUMERICS[name]`` (set through the flags themselves:
    ``torch.backends.mkldnn.flags`` also sets TF32 and warns about it)."""
    onednn, threads = NUMERICS[name]
    before = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = onednn
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before[0]
        torch.set_num_threads(before[1])


# Variables that make rich treat a captured stream or a pipe as a terminal, or size it: set in the
# shell that runs the tests (FORCE_COLOR is common in CI), they would put colour codes, spinners
# and another width into the output the tests read.
_TERMINAL_VARS = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE", "PY_COLORS", "COLUMNS", "LINES",
                  "JUPYTER_COLUMNS", "JUPYTER_LINES")


def cli_env(columns: int = 200) -> dict:
    """The environment the command-line tests run the CLI in (typer's CliRunner): a known width,
    no colour, and none of the variables above from the shell."""
    return {**dict.fromkeys(_TERMINAL_VARS), "COLUMNS": str(columns), "LINES": "50", "NO_COLOR": "1"}


def pipe_env() -> dict:
    """The environment of a CLI run as a subprocess writing to a pipe: the shell's, less the
    variables above, so that the pipe is seen as one."""
    return {k: v for k, v in os.environ.items() if k not in _TERMINAL_VARS}
