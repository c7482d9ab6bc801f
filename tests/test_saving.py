"""octify.save / octify.load: one .safetensors file (weights, and a JSON recipe in its header)
from which the model is made again by replaying its conversion on the original; no code from
the file runs. Every kind of model the pass makes comes back with identical outputs, record and
train/eval flags; a file that does not match, or was edited, is refused with a clear message."""

from __future__ import annotations

import operator

import json
import struct

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify
from octify.fx import freeze as freeze_module
from octify.fx import measured
from octify.fx.measure import Timings
from octify.record import ConversionRecord
from octify.recipe import RECIPE_KEY


class Net(nn.Module):
    """A stem, two residual blocks (the second strided, with a 1x1 skip), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = Res(16, 32, 1)
        self.b2 = Res(32, 32, 2)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.b2(self.b1(self.stem(x))), 1).flatten(1))


class Res(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.bn1(self.conv1(x)))) + self.skip(x))


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = Net()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _round_trip(model: nn.Module, original: nn.Module, tmp_path, x=X, name: str = "m.safetensors", **load) -> nn.Module:
    """Save, load from a fresh copy of the original (other weights: only the file's count), and
    check outputs, record and train/eval flags."""
    path = octify.save(model, tmp_path / name)
    before = {n: p.clone() for n, p in original.state_dict().items()}
    back = octify.load(path, model=original, **load)
    assert all(torch.equal(before[n], p) for n, p in original.state_dict().items())  # the original is left as it was
    assert type(back).__name__ == type(model).__name__ or isinstance(back, torch.fx.GraphModule)
    assert [(n, m.training) for n, m in back.named_modules()] == [(n, m.training) for n, m in model.named_modules()]
    was = model.training
    model.eval(), back.eval()
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    model.train(was)
    rec = octify.record.find_record(model)
    if rec is not None:
        assert octify.record_of(back).to_dict() == rec.to_dict()
    return back


def test_a_converted_cnn_comes_back_identical_with_its_record_and_mixed_train_flags(tmp_path):
    net = _net()
    oct_net = octify.convert(net, example_inputs=X)
    oct_net.get_submodule("b1").train()  # a mixed state: what was in training mode stays so
    back = _round_trip(oct_net, _net(seed=5), tmp_path)
    assert octify.record_of(back).plan and octify.record.model_name(back) == "OctNet"
    assert isinstance(back.get_submodule("b1.conv2"), octify.OctConv2d)


def test_the_file_is_safetensors_with_the_recipe_in_its_header_and_nothing_else(tmp_path):
    net = _net()
    path = octify.save(octify.convert(net, example_inputs=X), tmp_path / "n.safetensors", spec="file.py:Net", model_args={"width": (1, 2)})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    # The header, then the tensors' bytes back to back: no room for a pickle.
    assert 8 + n + max(v["data_offsets"][1] for v in tensors.values()) == len(raw)
    recipe = json.loads(header["__metadata__"][RECIPE_KEY])
    assert set(recipe) == {"format", "versions", "spec", "model_args", "record", "freeze", "training", "structure"}
    assert recipe["format"] == "octify/1" and recipe["spec"] == "file.py:Net" and recipe["freeze"] is None
    assert recipe["model_args"] == {"width": {"python": "(1, 2)"}} and recipe["training"] == []
    assert recipe["record"]["options"]["inputs"]["args"] == {"tuple": [{"tensor": [2, 3, 32, 32], "dtype": "float32"}]}
    assert recipe["record"]["plan"]["b1_conv2"]["alpha_out"] == 0.5
    from safetensors.torch import load_file

    assert set(load_file(str(path))) == set(octify.convert(net, example_inputs=X).state_dict())


def test_the_record_round_trips_through_json():
    rec = octify.record_of(octify.convert(_net(), example_inputs=X))
    rec.finetune = {"kept": "best", "history": [{"step": 0, "rel_error": 0.5}]}
    back = ConversionRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec and back.convs[1].in_shape == (2, 16, 32, 32) and isinstance(back.specialized, list)
    assert back.plan["b1_conv1"] == {"alpha_out": 0.5, "reason": None, "keep_plain": False, "split_groups": 1,
                                     "stride_mode": "conv", "low": None, "cuts": []}
    with pytest.raises(ValueError, match="unknown fields bogus"):
        ConversionRecord.from_dict({**rec.to_dict(), "bogus": 1})


class Audio(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv1d(2, 16, 5, padding=2), nn.Conv1d(16, 16, 3, padding=1), nn.Conv1d(16, 8, 3, padding=1)

    def forward(self, x):
        return self.c3(F.relu(self.c2(F.relu(self.c1(x)))))


class Video(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv3d(3, 8, 3, padding=1), nn.Conv3d(8, 16, 3, padding=1), nn.Conv3d(16, 4, 1)
        self.bn = nn.BatchNorm3d(16)

    def forward(self, x):
        return self.c3(F.relu(self.bn(self.c2(F.relu(self.c1(x))))))


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 16, 2, stride=2)
        self.out = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        return self.out(F.relu(self.up(F.relu(self.c2(F.relu(self.c1(x)))))))


@pytest.mark.parametrize("make, x", [
    (Audio, torch.randn(2, 2, 64)),
    (Video, torch.randn(1, 3, 4, 16, 16)),
    (Decoder, torch.randn(1, 3, 32, 32)),
], ids=["conv1d", "conv3d", "transposed"])
def test_conv1d_conv3d_and_transposed_models_come_back_identical(tmp_path, make, x):
    torch.manual_seed(0)
    net = make().eval()
    oct_net = octify.convert(net, example_inputs=x, min_size=2)
    assert octify.record_of(oct_net).converted
    torch.manual_seed(1)
    _round_trip(oct_net, make(), tmp_path, x=x)


def test_calibrated_low_channels_are_replayed_without_data(tmp_path):
    net = _net()
    data = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    oct_net = octify.convert(net, example_inputs=X, calibration=data, calibration_split="measured")
    rec = octify.record_of(oct_net)
    measured_low = {k: p["low"] for k, p in rec.plan.items() if p["low"] is not None}
    assert measured_low and rec.calibration["chosen"] == "measured"
    back = _round_trip(oct_net, _net(seed=3), tmp_path)
    assert {k: p["low"] for k, p in octify.record_of(back).plan.items() if p["low"] is not None} == measured_low
    # The layers rebuilt send the measured channels low, not the default split.
    name = next(c for c in rec.calibration["assigned"])
    assert list(back.get_submodule(name).out_partition.low) == list(oct_net.get_submodule(name).out_partition.low)


def test_the_measured_latency_plan_is_replayed_without_timing(tmp_path, monkeypatch):
    ms = {"b1": {0.0: 5.0, 0.25: 4.0, 0.5: 3.0, 0.75: 3.5}, "b2": {0.0: 5.0, 0.25: 4.5, 0.5: 4.0, 0.75: 2.0}}

    def fake(plain, variants, inputs, octave, runs, shapes, progress=None):
        return Timings(["b1", "b2"], {u: dict(ms[u]) for u in ms}, {u: list(shapes[u]) for u in ms}, {}, "measured")

    monkeypatch.setattr(measured, "time_units", fake)
    monkeypatch.setattr(measured, "_ratio", lambda *a: 0.8)
    net = _net()
    oct_net = octify.convert(net, example_inputs=X, policy="latency", latency_cache=False)
    convs = {c.name: c.alpha_out for c in octify.record_of(oct_net).convs}
    assert convs["b1.conv1"] == 0.5 and convs["b2.conv1"] == 0.75  # two alphas: the plan, not a policy, says which
    monkeypatch.setattr(measured, "time_units", lambda *a, **k: pytest.fail("timed again on load"))
    monkeypatch.setattr(measured, "_ratio", lambda *a, **k: pytest.fail("timed again on load"))
    back = _round_trip(oct_net, _net(seed=2), tmp_path)
    assert octify.record_of(back).latency_plan["verified_ratio"] == 0.8


def test_a_finetuned_model_keeps_its_weights_and_history(tmp_path):
    net = _net()
    oct_net = octify.convert(net, example_inputs=X)
    data = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    tuned = octify.finetune(net, oct_net, data, steps=2, lr=0.01, validation=data[:1], keep_best="last", seed=0)
    assert octify.record_of(tuned).finetune
    back = _round_trip(tuned, _net(seed=7), tmp_path)
    assert octify.record_of(back).finetune["history"] == json.loads(json.dumps(octify.record_of(tuned).finetune["history"]))


def test_a_frozen_model_replays_the_matmul_layers_chosen_by_timing(tmp_path, monkeypatch):
    def chosen_by_timing(model, inputs, *a, **k):  # "auto" times each 1x1 layer: here b1.skip wins
        model.get_submodule("b1.skip").use_matmul()
        return ["b1.skip"]

    monkeypatch.setattr(freeze_module, "choose_matmul", chosen_by_timing)
    net = _net()
    frozen = octify.freeze(octify.convert(net, example_inputs=X))
    assert octify.record_of(frozen).frozen == {
        "fold_bn": True, "memory_format": "channels_last", "conv3d": "torch", "merge_lh": False, "matmul_1x1": ["b1.skip"]
    }
    monkeypatch.setattr(freeze_module, "choose_matmul", lambda *a, **k: pytest.fail("timed again on load"))
    back = _round_trip(frozen, _net(seed=4), tmp_path)
    assert back.get_submodule("b1.skip")._matmul and not back.get_submodule("b2.skip")._matmul
    assert not any(isinstance(m, (nn.BatchNorm2d, octify.OctBatchNorm2d)) for m in back.modules())


def test_a_frozen_model_with_merged_low_convs_comes_back_merged(tmp_path):
    frozen = octify.freeze(octify.convert(_net(), example_inputs=X), matmul_1x1=False, merge_lh=True)
    merged = sorted(n for n, m in frozen.named_modules() if getattr(m, "merges_lh", False))
    assert merged == ["b1.conv2", "b2.conv1", "b2.conv2", "b2.skip"]  # b1.conv1 and b1.skip take the plain stem: no L->H
    back = _round_trip(frozen, _net(seed=5), tmp_path)
    assert sorted(n for n, m in back.named_modules() if getattr(m, "merges_lh", False)) == merged
    assert "b1.conv2.weight_lowres" in back.state_dict() and "b1.conv2.weight_lh" not in back.state_dict()
    with pytest.raises(TypeError, match=r"octify.freeze: merge_lh must be True or False, found 'yes' \(str\)"):
        octify.freeze(octify.convert(_net(), example_inputs=X), merge_lh="yes")


def test_freeze_takes_the_names_of_the_matmul_layers_and_refuses_others():
    oct_net = octify.convert(_net(), example_inputs=X)
    frozen = octify.freeze(oct_net, matmul_1x1=["b1.skip"])
    assert [n for n, m in frozen.named_modules() if getattr(m, "_matmul", False)] == ["b1.skip"]
    with pytest.raises(ValueError, match=r"matmul_1x1 names 'b2.skip', 'nope', which are not a 1x1 octave conv"):
        octify.freeze(oct_net, matmul_1x1=("b2.skip", "nope"))  # b2.skip: a strided 1x1
    with pytest.raises(ValueError, match="True, False, 'auto' or a list of layer names, found 'fast'"):
        octify.freeze(oct_net, matmul_1x1="fast")


def test_plain_and_frozen_plain_models_come_back(tmp_path):
    net = _net()
    back = _round_trip(net, _net(seed=9), tmp_path, name="plain.safetensors")
    assert type(back) is Net
    frozen = octify.freeze(net, matmul_1x1=False, example_inputs=torch.randn(1, 3, 40, 40))
    assert frozen.meta["octify.freeze"]["matmul_1x1"] == []
    assert frozen.meta["octify.freeze"]["inputs"] == [{"shape": [1, 3, 40, 40], "dtype": "float32"}]
    back = _round_trip(frozen, _net(seed=9), tmp_path, name="frozen.safetensors")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in back.modules())
    # Both blocks' sums in place, on load as when frozen (the file's structure says so too).
    assert [n.target for n in back.graph.nodes if n.target in (operator.add, operator.iadd)] == [operator.iadd] * 2


def test_user_rules_must_be_given_again_and_leaf_types_are_found_in_the_model(tmp_path):
    net = _net()
    with pytest.warns(UserWarning, match="none of the 7 convs was converted"):  # the blocks are leaves: traced around
        oct_net = octify.convert(net, example_inputs=X, rules={nn.ReLU: None}, leaf_modules=(Res,))
    assert octify.record_of(oct_net).options["leaf_types"] == [f"{Res.__module__}.Res"]
    path = octify.save(oct_net, tmp_path / "r.safetensors")
    with pytest.raises(ValueError, match=r"converted with rules for torch\.nn\.modules\.activation\.ReLU of your own; found rules for none\. Hint: pass the same rules"):
        octify.load(path, model=net)
    back = octify.load(path, model=_net(seed=1), rules={nn.ReLU: None})
    assert torch.equal(back(X), oct_net(X)) and type(back.get_submodule("b1")) is Res and "b1_conv1" not in back.code


def test_torchvision_models_rebuild_from_the_spec_and_refuse_another_original(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    oct_net = octify.convert(net, example_inputs=X)
    path = octify.save(oct_net, tmp_path / "r18.safetensors", spec="torchvision:resnet18", model_args={"num_classes": 10})
    back = octify.load(path)  # the recipe builds the original (random weights), the file's weights replace them
    with torch.no_grad():
        assert torch.equal(back(X), oct_net(X))
    with pytest.raises(ValueError, match=r"r18\.safetensors cannot be rebuilt from the model given: .*Hint: pass the original"):
        octify.load(path, model=torchvision.models.resnet34(num_classes=10))
    with pytest.raises(ValueError, match=r"another structure than the one rebuilt from the model given \(ResNet\) \(first difference: fc.weight is 10x512 .* 1000x512"):
        octify.load(path, model=torchvision.models.resnet18())

    def other_args(recipe, tensors):
        recipe["model_args"] = {"num_classes": 20}

    _edit_recipe(path, other_args)
    with pytest.raises(ValueError, match=r"another structure than the one rebuilt from torchvision:resnet18 \(first difference: fc.weight is 10x512 F32 in the file, 20x512"):
        octify.load(path)


def test_a_file_converted_from_code_needs_the_original(tmp_path):
    path = octify.save(octify.convert(_net(), example_inputs=X), tmp_path / "n.safetensors", spec="net.py:Net")
    with pytest.raises(ValueError, match=r"was converted from net\.py:Net: octify\.load builds torchvision:NAME and timm:NAME itself, expected model="):
        octify.load(path)
    path = octify.save(octify.convert(_net(), example_inputs=X), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"does not say what it was converted from \(saved without spec=\): expected model="):
        octify.load(path)


def _edit_recipe(path, change):
    """Rewrite ``path`` with its recipe changed by ``change(recipe)`` (what someone editing the file does)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as f:
        recipe = json.loads(f.metadata()[RECIPE_KEY])
    tensors = load_file(str(path))
    change(recipe, tensors)
    save_file(tensors, str(path), metadata={RECIPE_KEY: json.dumps(recipe)})


def test_an_edited_file_is_refused_with_what_differs(tmp_path):
    net = _net()
    oct_net = octify.convert(net, example_inputs=X)
    path = tmp_path / "n.safetensors"

    def shape(recipe, tensors):
        tensors["fc.weight"] = tensors["fc.weight"][:4].clone()

    octify.save(oct_net, path)
    _edit_recipe(path, shape)
    with pytest.raises(ValueError, match=r"does not hold the weights its recipe describes \(fc\.weight is 4x32 F32 in the file, 5x32 F32 in the model rebuilt\): the file is damaged or was edited"):
        octify.load(path, model=net)

    def structure(recipe, tensors):
        recipe["structure"] = "0" * 64

    octify.save(oct_net, path)
    _edit_recipe(path, structure)
    with pytest.raises(ValueError, match=r"another structure than the one rebuilt from the model given \(Net\) \(the weights agree; .*\)\. Hint: pass the original"):
        octify.load(path, model=net)

    def plan(recipe, tensors):
        recipe["record"]["plan"]["b1_conv2"]["alpha_out"] = 0.25

    octify.save(oct_net, path)
    _edit_recipe(path, plan)
    with pytest.raises(ValueError, match=r"another structure .* \(first difference: b1\.conv2\.weight_hh is 16x16x3x3 F32 in the file, 24x16x3x3"):
        octify.load(path, model=net)

    def freeze_inputs(recipe, tensors):
        recipe["freeze"]["inputs"] = [{"shape": [2, 3, 32, 32], "dtype": "load"}]  # a torch name, but no dtype

    octify.save(octify.freeze(net, example_inputs=X), path)
    _edit_recipe(path, freeze_inputs)
    with pytest.raises(ValueError, match=r"its recipe's freeze inputs must be a list of \{shape, dtype\}, found \{'shape': \[2, 3, 32, 32\], 'dtype': 'load'\}: the file is damaged or was edited"):
        octify.load(path, model=net)

    def renamed(recipe, tensors):
        recipe["record"]["plan"]["nowhere"] = recipe["record"]["plan"].pop("b1_conv2")

    octify.save(oct_net, path)
    _edit_recipe(path, renamed)
    with pytest.raises(ValueError, match=r"the model given has no 'nowhere' where the saved conversion planned a conv"):
        octify.load(path, model=net)

    def version(recipe, tensors):
        recipe["format"] = "octify/9"

    octify.save(oct_net, path)
    _edit_recipe(path, version)
    with pytest.raises(ValueError, match=r"has a recipe of format 'octify/9': expected 'octify/1'"):
        octify.load(path, model=net)


def test_pickles_are_refused_unless_trusted_and_save_writes_safetensors_only(tmp_path):
    net = _net()
    torch.save(net, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt is a pickled model \(octify 0\.1 format, or torch\.save\): loading it runs code stored "
                                         r"in the file\. Hint: if you trust it, octify\.load\(.*old\.pt', trusted=True\) / --trusted; then "
                                         r"octify\.save\(model, 'old\.safetensors'\) to convert it"):
        octify.load(tmp_path / "old.pt")
    trusted = octify.load(tmp_path / "old.pt", trusted=True)
    assert torch.equal(trusted(X), net(X))
    back = octify.load(octify.save(trusted, tmp_path / "old.safetensors"), model=_net(seed=3))
    assert torch.equal(back(X), net(X))
    with pytest.raises(ValueError, match=r"expected a path ending \.safetensors, found '.*x\.pt'\. Hint: octify\.save\(model, '.*x\.safetensors'\)"):
        octify.save(net, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"found a torch\.fx GraphModule \(Net\) with no octify record \(traced by you\?\), which octify cannot rebuild"):
        octify.save(torch.fx.symbolic_trace(net), tmp_path / "t.safetensors")
    (tmp_path / "w.safetensors").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a file octify.save wrote: expected a .safetensors file with an octify recipe"):
        octify.load(tmp_path / "w.safetensors")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="a safetensors file without an octify recipe: expected a file written by octify.save"):
        octify.load(tmp_path / "bare.safetensors", model=net)


# --------------------------------------------------------------------------- the command line

NET_PY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, 4, 3, padding=1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))
"""


def test_the_command_line_writes_safetensors_and_reads_pickles_only_when_trusted(tmp_path):
    from test_cli import assert_error, reload, run

    net_py = tmp_path / "net.py"
    net_py.write_text(NET_PY)
    shape = "1,3,32,32"
    assert_error(run("convert", net_py, "-i", shape, "-o", tmp_path / "x.pt"), 2,
                 f"-o {tmp_path / 'x.pt'}: octify writes models as .safetensors files", "expected a path ending .safetensors, found .pt",
                 f"Hint: -o {tmp_path / 'x.safetensors'}")
    assert not (tmp_path / "x.pt").exists()
    out = tmp_path / "n.safetensors"
    result = run("convert", net_py, "--model-arg", "width=16", "-i", shape, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    converted = reload(out)  # the original made again from net.py with width=16, as the recipe says
    assert converted.get_submodule("b").weight_hh.shape == (8, 16, 3, 3)  # 16 in (from the plain stem), 8 of 16 out high
    # A model pickled whole (octify 0.1's .pt, torch.save) runs code when read: refused, unless --trusted.
    pickled = tmp_path / "old.pt"
    torch.save(converted, pickled)
    assert_error(run("report", pickled, "-i", shape), 2, f"{pickled} is a pickled model (octify 0.1 format, or torch.save): loading it runs "
                 "code stored in the file", "--trusted", "octify.save(model, 'old.safetensors') to convert it")
    result = run("report", pickled, "-i", shape, "--trusted", "--json", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["source"] == f"OctNet saved in {pickled}"
    # ... and converted from, into the new format (its spec: the pickled file, read again with --trusted).
    conv = lambda c_in: nn.Conv2d(c_in, 8, 3, padding=1)  # noqa: E731
    torch.save(nn.Sequential(conv(3), nn.ReLU(), conv(8), conv(8)), tmp_path / "plain.pt")
    result = run("convert", tmp_path / "plain.pt", "-i", shape, "-o", tmp_path / "again.safetensors", "--trusted", "-q")
    assert result.exit_code == 0, result.stderr
    assert isinstance(reload(tmp_path / "again.safetensors", trusted=True).get_submodule("2"), octify.OctConv2d)
    assert_error(run("report", tmp_path / "again.safetensors", "-i", shape), 2, "MODEL", "was converted from", "is a pickled model")
    # --weights given a converted model says where it goes.
    assert_error(run("report", net_py, "--weights", out), 2, "is a model saved by octify (give it as MODEL")
