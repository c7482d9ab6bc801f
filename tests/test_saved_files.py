"""Models saved by earlier versions load with octify.load(trusted=True) and give the same outputs.

``fixtures/saved_v0_1_0.pt`` was written by octify 0.1.0 (``fixtures/make_saved_v0_1_0.py``),
before the package was restructured: it refers to classes and functions by their old module
paths (``octify._modules.Realign``, ``octify._fuse.conv_bn``, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import octify
from octify import nn as onn

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_model_saved_by_0_1_0_loads_with_the_same_outputs_and_record(tmp_path):
    io = torch.load(FIXTURES / "saved_v0_1_0_io.pt", weights_only=True)
    with pytest.raises(ValueError, match=r"saved_v0_1_0\.pt is a pickled model \(octify 0\.1 format, or torch\.save\): loading it runs code"):
        octify.load(FIXTURES / "saved_v0_1_0.pt")  # a pickle runs code stored in it: only on request
    model = octify.load(FIXTURES / "saved_v0_1_0.pt", trusted=True)
    assert not model.training
    with torch.no_grad():
        y = model(io["x"])
    torch.testing.assert_close(y, io["y"], rtol=1e-5, atol=1e-6)
    expected = json.loads(io["record"])
    expected["specialized"] = expected["input_shapes"] = []  # fields added since 0.1.0: an old record has none
    expected["calibration"], expected["finetune"], expected["class_name"], expected["random_weights"] = {}, {}, "", False
    expected["reconstruction"] = expected["taps"] = expected["latency_plan"] = {}
    expected["plan"] = expected["options"] = expected["frozen"] = {}
    assert json.loads(json.dumps(octify.record_of(model).to_dict())) == expected
    # The old private classes are the public layers of octify.nn now.
    kinds = {type(m) for m in model.modules()}
    for cls in (onn.ChannelMerge, onn.ChannelSplit, onn.Realign, onn.SharedStochasticDepth, onn.OctaveMerge, onn.OctaveSplit):
        assert cls in kinds, cls.__name__
    # Its conv_bn calls (0.1.0's fused pairs) fold for good when it is frozen.
    assert "conv_bn(" in model.code
    frozen = octify.freeze(model)
    assert "conv_bn(" not in frozen.code and len(octify.record_of(frozen).fused) >= model.code.count("conv_bn(")
    with torch.no_grad():
        torch.testing.assert_close(frozen(io["x"]), io["y"], rtol=1e-4, atol=1e-5)
    # Training still works on the reloaded model (the fused conv -> BN call runs both modules).
    model.train()
    model(io["x"]).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # Its record has no plan to replay: saving it in the new format says to convert again.
    with pytest.raises(ValueError, match=r"no plan \(converted by octify 0\.1, before this format\).*Hint: convert the original again"):
        octify.save(model, tmp_path / "old.safetensors")


def test_the_old_file_loads_in_a_fresh_process_with_plain_torch_load():
    # A user's script that never imported octify's internals: importing octify is enough.
    code = (
        "import torch, octify, json;"
        f"m = torch.load({str(FIXTURES / 'saved_v0_1_0.pt')!r}, weights_only=False);"
        f"io = torch.load({str(FIXTURES / 'saved_v0_1_0_io.pt')!r}, weights_only=True);"
        "y = m(io['x']);"
        "print(float((y - io['y']).abs().max()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) < 1e-5
