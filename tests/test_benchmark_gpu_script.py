"""benchmarks/gpu.py runs on a machine without a GPU (--device cpu), so that it does not rot between
the runs on a GPU machine; on such a run it prints its table and saves nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_gpu_benchmark_measures_both_sides_on_a_cpu_and_saves_nothing():
    saved = ROOT / "benchmarks" / "results" / "gpu.json"
    before = saved.read_bytes() if saved.exists() else None
    proc = _run("--device", "cpu", "--models", "resnet18", "--batches", "1", "2", "--dtypes", "float32", "--modes", "eager",
                "--size", "32", "--iters", "2", "--reps", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"^\| eager \| float32 \| resnet18 \| (\d+) \| ([\d.]+) \| ([\d.]+) \| \*\*([\d.]+)\*\* / \*\*([\d.]+)\*\* \| ([\d.]+) \|$",
                      proc.stdout, re.M)
    assert [r[0] for r in rows] == ["1", "2"], proc.stdout
    for _, plain_ms, octave_ms, r1, r2, macs in rows:
        assert float(plain_ms) > 0 and float(octave_ms) > 0 and float(r1) > 0 and float(r2) > 0
        assert 0.5 < float(macs) < 0.9  # resnet18 at alpha 0.5: the stem and the head stay plain
    assert "octave faster in" in proc.stdout and "(not saved: ran on cpu, not a GPU)" in proc.stdout
    assert (saved.read_bytes() if saved.exists() else None) == before


@pytest.mark.parametrize("args, expected", [
    (["--device", "cuda"], "expected a CUDA GPU, found none"),
    (["--device", "cpu", "--modes", "cuda-graph"], "CUDA graphs need --device cuda, found --device cpu"),
])
def test_the_gpu_benchmark_says_what_it_needs(args, expected):
    if "cuda-graph" not in args:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU: the benchmark would run")
    proc = _run(*args)
    assert proc.returncode == 2, proc.stdout
    assert expected in proc.stderr and "Traceback" not in proc.stderr
