"""Helpers every test file shares, and the markers that split the fast loop from the full suite.

- ``zoo``: parametrized over the torchvision model zoo (``make test-zoo``);
- ``slow``: a whole-network check that takes seconds (full torchvision networks at real sizes).
``make test-fast`` runs everything else; ``make test`` runs all of it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import gc
import os
from typing import Any, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

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


class OpCounter(TorchDispatchMode):
    """Counts the aten ops run inside it, by overload packet name (``counts["convolution"]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


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


# --------------------------------------------------------------------------- the command line, in process


def run(*args: Any, columns: int = 200):
    """``octify ARGS...`` through typer's CliRunner, at a known width (``cli_env``)."""
    from typer.testing import CliRunner

    from octify.cli import app

    return CliRunner(env=cli_env(columns)).invoke(app, [str(a) for a in args])


def write(tmp_path: Any, name: str, source: str) -> Any:
    """A file of ``source`` (dedented) named ``name`` in ``tmp_path``; its path."""
    import textwrap

    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def reload(path: Any, trusted: bool = False) -> nn.Module:
    """A file the CLI wrote, read as the CLI reads MODEL: rebuilt from the original its recipe names."""
    from octify.cli.saved import load_model

    return load_model(str(path), trusted=trusted).model


def assert_error(result: Any, code: int, *needles: str) -> None:
    """Exit code, a one-line message on stderr that names the problem, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("octify: error:"), err
    assert "\n" not in err, err
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)


# --------------------------------------------------------------------------- random CNNs (hypothesis)
ACTS = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish}
F_ACTS = {"relu": F.relu, "silu": F.silu, "hardswish": F.hardswish}


def _out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


@st.composite
def cnn_specs(draw: Any) -> dict:
    """A random small CNN: a list of blocks whose shapes are tracked so that every op is valid."""
    h, w = draw(st.sampled_from([(17, 23), (31, 31), (32, 32), (19, 26), (24, 24), (21, 16), (33, 18)]))
    spec: dict = {"hw": (h, w), "blocks": []}
    c = 3
    for i in range(draw(st.integers(2, 6))):
        kind = "conv" if i == 0 else draw(st.sampled_from(["conv", "conv", "res", "cat", "se", "pool", "scale"]))
        b: dict = {"kind": kind}
        small = min(h, w)
        if kind == "conv":
            k = draw(st.sampled_from([1, 3, 5]))
            s = draw(st.sampled_from([1, 1, 2])) if small >= 4 else 1
            out = draw(st.integers(4, 24))
            groups = 1
            gk = draw(st.sampled_from(["1", "1", "2", "dw"])) if i > 0 else "1"
            if gk == "dw":
                out, groups = c, c
            elif gk == "2" and c % 2 == 0:
                out, groups = out + out % 2, 2
            pad: Any = k // 2
            if small >= k + 2 and draw(st.integers(0, 3)) == 0:
                pad = 0
            elif s == 1 and draw(st.booleans()):
                pad = "same"
            b.update(k=k, s=s, out=out, groups=groups, pad=pad, bias=draw(st.booleans()), bn=draw(st.booleans()),
                     act=draw(st.sampled_from([None, *ACTS])), functional=draw(st.booleans()))
            p = k // 2 if pad == "same" else pad
            h, w, c = _out(h, k, s, p), _out(w, k, s, p), out
        elif kind == "res":
            s = draw(st.sampled_from([1, 2])) if small >= 4 else 1
            out = c if (s == 1 and draw(st.booleans())) else draw(st.integers(4, 24))
            groups = 2 if (c % 2 == 0 and out % 2 == 0 and draw(st.integers(0, 2)) == 0) else 1
            k = draw(st.sampled_from([1, 3, 5]))
            b.update(k=k, s=s, out=out, groups=groups, bias=draw(st.booleans()), act=draw(st.sampled_from(list(ACTS))),
                     proj=(s != 1 or out != c))
            h, w, c = _out(h, k, s, k // 2), _out(w, k, s, k // 2), out
        elif kind == "cat":
            widths = draw(st.lists(st.integers(2, 12), min_size=1, max_size=2))
            b.update(widths=widths, identity=draw(st.booleans()), bias=draw(st.booleans()))
            c = sum(widths) + (c if b["identity"] else 0)  # torch.cat of a single tensor included
        elif kind == "se":
            b.update(r=draw(st.integers(1, max(1, c // 2))), mean=draw(st.booleans()), hard=draw(st.booleans()))
        elif kind == "pool":
            k = draw(st.sampled_from([2, 3]))
            if small < k:
                b = {"kind": "scale"}
            else:
                pad = draw(st.sampled_from([0, 1])) if k == 3 else 0
                b.update(k=k, pad=pad, max=draw(st.booleans()), module=draw(st.booleans()))
                h, w = _out(h, k, 2, pad), _out(w, k, 2, pad)
        b["out_c"] = c
        spec["blocks"].append(b)
    spec["head"] = draw(st.booleans())
    spec["classes"] = draw(st.integers(2, 10))
    return spec


class SpecNet(nn.Module):
    """A CNN built from a spec; forward follows the spec (static Python control flow: traceable)."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.spec = spec
        self.blocks = nn.ModuleList()
        c = 3
        for b in spec["blocks"]:
            m = nn.ModuleDict()
            kind = b["kind"]
            if kind == "conv":
                m["conv"] = nn.Conv2d(c, b["out"], b["k"], b["s"], b["pad"], groups=b["groups"], bias=b["bias"])
                if b["bn"]:
                    m["bn"] = nn.BatchNorm2d(b["out"])
                if b["act"] and not b["functional"]:
                    m["act"] = ACTS[b["act"]]()
            elif kind == "res":
                m["conv1"] = nn.Conv2d(c, b["out"], b["k"], b["s"], b["k"] // 2, groups=b["groups"], bias=False)
                m["bn1"] = nn.BatchNorm2d(b["out"])
                m["act1"] = ACTS[b["act"]]()
                m["conv2"] = nn.Conv2d(b["out"], b["out"], 3, 1, "same", bias=b["bias"])
                m["bn2"] = nn.BatchNorm2d(b["out"])
                if b["proj"]:
                    m["proj"] = nn.Conv2d(c, b["out"], 1, b["s"], bias=False)
                    m["proj_bn"] = nn.BatchNorm2d(b["out"])
            elif kind == "cat":
                for j, width in enumerate(b["widths"]):
                    m[f"branch{j}"] = nn.Conv2d(c, width, 1 + 2 * j, padding=j, bias=b["bias"])
            elif kind == "se":
                m["fc1"] = nn.Conv2d(c, b["r"], 1)
                m["fc2"] = nn.Conv2d(b["r"], c, 1)
            elif kind == "pool" and b["module"]:
                m["pool"] = (nn.MaxPool2d if b["max"] else nn.AvgPool2d)(b["k"], 2, b["pad"])
            self.blocks.append(m)
            c = b["out_c"]
        if spec["head"]:
            self.fc = nn.Linear(c, spec["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b, m in zip(self.spec["blocks"], self.blocks):
            kind = b["kind"]
            if kind == "conv":
                x = m["conv"](x)
                if b["bn"]:
                    x = m["bn"](x)
                if b["act"]:
                    x = F_ACTS[b["act"]](x) if b["functional"] else m["act"](x)
            elif kind == "res":
                y = m["bn2"](m["conv2"](m["act1"](m["bn1"](m["conv1"](x)))))
                x = F.relu(y + (m["proj_bn"](m["proj"](x)) if b["proj"] else x))
            elif kind == "cat":
                parts = [m[f"branch{j}"](x) for j in range(len(b["widths"]))]
                x = torch.cat(parts + [x] if b["identity"] else parts, dim=1)
            elif kind == "se":
                s = x.mean((2, 3), keepdim=True) if b["mean"] else F.adaptive_avg_pool2d(x, 1)
                s = m["fc2"](F.relu(m["fc1"](s)))
                x = x * (F.hardsigmoid(s) if b["hard"] else torch.sigmoid(s))
            elif kind == "pool":
                if b["module"]:
                    x = m["pool"](x)
                else:
                    x = (F.max_pool2d if b["max"] else F.avg_pool2d)(x, b["k"], 2, b["pad"])
            elif kind == "scale":
                x = x * 0.5 + 0.25
        if self.spec["head"]:
            x = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return x
