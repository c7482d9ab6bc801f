"""The `octify` command line (octify/cli/, octify/io.py), driven with typer's CliRunner."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_error, reload, run, write

import octify
from octify.cli import loading as _load

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = ROOT / "examples" / "custom_cnn.py"
SHAPE = "1,3,32,32"



@pytest.fixture(autouse=True)
def _forget_model_files(tmp_path_factory):
    """The CLI imports model files under their own names; drop the ones these tests created."""
    before = set(sys.modules)
    yield
    base = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(base):
            del sys.modules[name]


def custom_cnn_class():
    spec = importlib.util.spec_from_file_location("_test_custom_cnn", CUSTOM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CustomCNN


# --------------------------------------------------------------------------- help and version


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert f"octify {octify.__version__}" in result.stdout


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["convert", "-h"], ["report", "--help"]])
def test_help_has_examples(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "Examples" in result.stdout
    assert "torchvision:" in result.stdout


def test_no_arguments_shows_help():
    result = run()
    assert result.exit_code == 2, result.output  # a usage error, as click has it
    assert "Usage: octify" in result.stdout
    assert "convert" in result.stdout and "report" in result.stdout


def test_console_script_installed():
    script = Path(sys.executable).parent / "octify"
    if not script.exists():
        pytest.skip("the octify console script is not installed next to this python")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"octify {octify.__version__}")


# --------------------------------------------------------------------------- convert: the happy path


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One conversion of the custom CNN with known weights (a checkpoint dict), a file output and a JSON report."""
    tmp = tmp_path_factory.mktemp("convert")
    torch.manual_seed(0)
    net = custom_cnn_class()().eval()
    state = net.state_dict()
    torch.save({"state_dict": state, "epoch": 3}, tmp / "ckpt.pth")
    result = run(
        "convert", CUSTOM, "--input-shape", SHAPE, "--weights", tmp / "ckpt.pth",
        "-o", tmp / "out.safetensors", "--json", tmp / "out.json",
    )
    return tmp, state, result


def test_convert_prints_the_report(converted):
    tmp, _, result = converted
    assert result.exit_code == 0, (result.stdout, result.stderr)
    out = result.stdout
    assert "Loaded class CustomCNN()" in out and "ckpt.pth['state_dict']" in out
    assert "23 Conv2d layers" in " ".join(out.split())  # the line may wrap at 200 columns: a long temporary path before it
    assert "Converted 15 of 23 convs to octave convs at alpha=0.5" in out
    assert "Left plain: 8 of 23 convs" in out
    assert "stem.0: stem (first conv on the model input)" in out  # the stem stays plain, with its reason
    assert "Saved" in out and "reloading it gives the converted model's outputs bit for bit" in out
    assert out.rstrip().splitlines()[-1].startswith("Next: the converted model is not the original")
    assert result.stderr == ""


def test_convert_writes_json(converted):
    tmp, _, _ = converted
    data = json.loads((tmp / "out.json").read_text())
    for side in ("before", "after"):
        assert {"macs", "flops", "params", "feature_map_bytes", "layers"} <= set(data[side])
    assert data["after"]["macs"] < data["before"]["macs"]
    assert data["conversion"]["alpha"] == 0.5


def test_saved_model_reloads_with_identical_outputs(converted):
    """The file equals an in-process conversion of the same weights, through octify.load (given the
    original's class) and through the command line's loader (which builds it from the recipe's spec)."""
    tmp, state, _ = converted
    net = custom_cnn_class()()
    net.load_state_dict(state)
    net.eval()
    x = torch.randn(1, 3, 32, 32)
    loaded = octify.load(tmp / "out.safetensors", model=custom_cnn_class()())  # random weights: the file's replace them
    from_spec = reload(tmp / "out.safetensors")
    with torch.no_grad():
        expected = octify.convert(net, 0.5, example_inputs=x)(x)
        assert torch.equal(loaded(x), expected)
        assert torch.equal(from_spec(x), expected)
    assert not loaded.training and not from_spec.training
    from octify.recipe import file_kind, read_recipe

    assert file_kind(tmp / "out.safetensors") == "safetensors" and read_recipe(tmp / "out.safetensors")["spec"] == str(CUSTOM)
    # Pairs are read through branch() and one-branch outputs through single(), so the reloaded model scripts.
    expected_code = octify.convert(net, 0.5, example_inputs=x).code
    for call in ("branch(", "single("):
        assert loaded.code.count(call) == expected_code.count(call) > 0
    with torch.no_grad():
        assert torch.equal(torch.jit.script(loaded)(x), expected)
    rec = octify.record_of(loaded)  # the conversion record survives the round trip
    assert rec.alpha == 0.5 and any(c.name == "stem.0" and not c.converted for c in rec.convs)


def test_report_on_the_saved_model(converted):
    tmp, _, _ = converted
    result = run("report", tmp / "out.safetensors", "-i", SHAPE, "--json", "-")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["macs"] > 0 and data["layers"] and data["source"] == f"OctCustomCNN saved in {tmp / 'out.safetensors'}, rebuilt from {CUSTOM}"


def test_json_to_stdout_is_only_json(tmp_path):
    result = run("convert", CUSTOM, "-i", SHAPE, "--alpha", "0.25", "-o", tmp_path / "m.safetensors", "--json", "-")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # nothing else on stdout
    assert {"before", "after"} <= set(data)
    assert "Saved" in result.stderr  # the human report moved to stderr


def test_default_output_name_and_quiet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("convert", CUSTOM, "-i", SHAPE, "-q", "--no-verify", "--exclude", "stage3*", "--alpha-for", "stage1.*=0.25")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "custom_cnn_oct.safetensors").is_file()
    rec = octify.record_of(reload(tmp_path / "custom_cnn_oct.safetensors"))
    assert all(not c.converted for c in rec.convs if c.name.startswith("stage3"))
    assert any(c.alpha_out == 0.25 for c in rec.convs if c.name.startswith("stage1."))


def test_leaf_by_class_name_keeps_the_block_whole(tmp_path):
    result = run("convert", CUSTOM, "-i", SHAPE, "--leaf", "SqueezeExcite", "--leaf", "stage3.*", "-o", tmp_path / "leaf.safetensors")
    assert result.exit_code == 0, result.stderr
    gm = reload(tmp_path / "leaf.safetensors")  # the leaf type is found again among the original's modules
    assert type(gm.get_submodule("stage1.0.se")).__name__ == "SqueezeExcite" and "stage1_0_se_" not in gm.code
    options = octify.record_of(gm).options
    assert options["leaf_globs"] == ["stage3.*"] and [t.rsplit(".", 1)[-1] for t in options["leaf_types"]] == ["SqueezeExcite"]


def test_model_without_conv_converts_to_itself(tmp_path):
    model_py = write(tmp_path, "mlp.py", """
        from torch import nn
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    """)
    result = run("convert", model_py, "-i", "1,3,2,2", "-o", tmp_path / "mlp_oct.safetensors")
    assert result.exit_code == 0, result.stderr
    assert "Nothing changed: the model has no conv layer" in result.stdout
    loaded = reload(tmp_path / "mlp_oct.safetensors")
    assert isinstance(loaded[1], torch.nn.Linear)


def test_report_zoo_model():
    result = run("report", "torchvision:resnet18", "--input-shape", "1,3,64,64")
    assert result.exit_code == 0, result.stderr
    assert "Loaded torchvision:resnet18" in result.stdout


# --------------------------------------------------------------------------- bad input


def test_missing_file():
    assert_error(run("convert", "no/such/model.py"), 2, "no such file: no/such/model.py", "torchvision:NAME")


def test_bare_zoo_name_gets_a_hint():
    assert_error(run("convert", "resnet18"), 2, "torchvision:resnet18")


def test_syntax_error_names_the_line(tmp_path):
    bad = write(tmp_path, "bad.py", """
        import torch

        def build_model(:
            return None
    """)
    assert_error(run("convert", bad), 1, "syntax error in", "bad.py:4")


def test_import_error_in_model_file(tmp_path):
    bad = write(tmp_path, "boom.py", """
        raise RuntimeError("no GPU here")
    """)
    assert_error(run("convert", bad), 1, "importing", "RuntimeError: no GPU here", "line 2")


def test_file_with_no_model(tmp_path):
    empty = write(tmp_path, "helpers.py", """
        def preprocess(x):
            return x
    """)
    assert_error(run("convert", empty), 2, "no model found in", "build_model()", "preprocess()")


def test_constructor_needs_arguments(tmp_path):
    net = write(tmp_path, "net.py", """
        from torch import nn
        class Net(nn.Module):
            def __init__(self, depth, width=8):
                super().__init__()
                self.conv = nn.Conv2d(3, width, 3)
            def forward(self, x):
                return self.conv(x)
    """)
    assert_error(run("convert", net), 2, "Net() in", "needs arguments (depth)", "Hint: pass them with --model-arg", f"{net}:Net --model-arg depth=VALUE")
    assert_error(run("convert", f"{net}:Net"), 2, "needs arguments (depth)", "--model-arg depth=VALUE")
    # Given on the command line: values are Python literals, else text.
    result = run("convert", net, "--model-arg", "depth=3", "--model-arg", "width=16", "-i", SHAPE, "-o", tmp_path / "n.safetensors", "-q")
    assert result.exit_code == 0, result.stderr
    assert reload(tmp_path / "n.safetensors").conv.out_channels == 16  # rebuilt with the recorded --model-arg
    result = run("report", f"{net}:Net", "--model-arg", "depth=3", "-i", SHAPE)
    assert result.exit_code == 0 and "Loaded class Net(depth=3)" in result.stdout, result.stderr
    assert_error(run("convert", net, "--model-arg", "depth=3", "--model-arg", "height=2"), 2,
                 "class Net(depth=3, height=2) in", "does not take these arguments: got an unexpected keyword argument 'height'; its arguments are (depth, width=8)")
    assert_error(run("convert", net, "--model-arg", "depth"), 2, "malformed --model-arg 'depth': expected KEY=VALUE with KEY a Python name")
    assert_error(run("convert", net, "--model-arg", "depth=1", "--model-arg", "depth=2"), 2, "--model-arg depth is given twice (1 and 2)")


def test_model_args_are_python_literals_or_text():
    from octify.cli.options import model_arg

    parsed = [model_arg(t) for t in ("n=10", "r=0.5", "b=True", "z=None", "s='VGG16'", "t=VGG16", "l=[2, 4, 2]", "e=", "eq=a=b")]
    assert [(a.key, a.value) for a in parsed] == [
        ("n", 10), ("r", 0.5), ("b", True), ("z", None), ("s", "VGG16"), ("t", "VGG16"), ("l", [2, 4, 2]), ("e", ""), ("eq", "a=b"),
    ]


def test_a_factory_that_raises_while_building_says_so_with_the_line(tmp_path):
    net = write(tmp_path, "shuffle.py", """
        from torch import nn
        class Block(nn.Module):
            def __init__(self, planes):
                super().__init__()
                self.conv = nn.Conv2d(planes, planes / 4, 1)  # a float channel count
            def forward(self, x):
                return self.conv(x)
        def ShuffleNetG2():
            return Block(16)
    """)
    assert_error(run("convert", f"{net}:ShuffleNetG2"), 1,
                 "building the model with ShuffleNetG2() failed: TypeError: empty(): argument 'size'", "(shuffle.py, line 6)")
    # The file alone: its class needs arguments, its function builds one: both said.
    assert_error(run("convert", net), 2, "Block() in", "needs arguments (planes)", "functions that take no arguments: ShuffleNetG2()",
                 f"Hint: name one, e.g. {net}:ShuffleNetG2")


def test_timm_by_name_with_arguments(tmp_path):
    pytest.importorskip("timm", reason="the models extra is not installed")
    result = run("convert", "timm:resnet18d", "--model-arg", "num_classes=10", "-i", SHAPE, "-o", tmp_path / "t.safetensors", "--json", tmp_path / "t.json")
    assert result.exit_code == 0, result.stderr
    assert "Loaded timm:resnet18d (pretrained=False, num_classes=10)" in result.stdout
    assert octify.load(tmp_path / "t.safetensors")(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # octify.load builds timm:NAME itself
    assert_error(run("convert", "timm:resnet50x"), 2, "unknown timm model 'resnet50x'", "Did you mean timm:resnet50")
    assert_error(run("convert", "timm:resnet18", "--model-arg", "pretrained=True"), 2, "octify builds models with random weights")
    assert_error(run("convert", "timm:"), 2, "'timm:' names no timm model: expected timm:NAME")


def test_ambiguous_model_lists_candidates(tmp_path):
    two = write(tmp_path, "two.py", """
        from torch import nn
        class A(nn.Module):
            def __init__(self):
                super().__init__(); self.c = nn.Conv2d(3, 4, 3)
        class B(nn.Module):
            def __init__(self):
                super().__init__(); self.c = nn.Conv2d(3, 4, 3)
    """)
    assert_error(run("convert", two), 2, "more than one model", "A, B", "two.py:A")


def test_unknown_name_in_file():
    assert_error(run("convert", f"{CUSTOM}:CustomCN"), 2, "has no 'CustomCN'", "CustomCNN")


@pytest.mark.parametrize("alpha, needle", [("1.5", "must be a number in [0, 1], found 1.5"), ("-0.1", "must be a number in [0, 1]"), ("half", "not a number"), ("nan", "found nan")])
def test_bad_alpha(alpha, needle):
    assert_error(run("convert", CUSTOM, "--alpha", alpha), 2, "--alpha", needle)


@pytest.mark.parametrize("shape", ["1,3,a,32", "1,3", "1,3,2,2,2,2", "1,3,0,32", ""])
def test_malformed_input_shape(shape):
    assert_error(run("convert", CUSTOM, "--input-shape", shape), 2, "malformed --input-shape", "N,C,H,W")


def test_input_shape_the_model_cannot_take():
    assert_error(
        run("convert", CUSTOM, "--input-shape", "1,1,32,32"), 2,
        "cannot take an input of shape 1x1x32x32", "takes 3 channels",
    )


def test_bad_alpha_for_and_octave():
    assert_error(run("convert", CUSTOM, "--alpha-for", "stage1"), 2, "--alpha-for", "GLOB=ALPHA")
    assert_error(run("convert", CUSTOM, "--alpha-for", "stage1*=2"), 2, "must be a number in [0, 1]")
    assert_error(run("convert", CUSTOM, "--octave", "two"), 2, "--octave")
    assert_error(run("convert", CUSTOM, "--stride-mode", "fast"), 2, "'conv' or 'pool'")


@pytest.mark.parametrize("option, value, call", [
    ("--alpha", "1.5", lambda: octify.convert(torch.nn.Conv2d(3, 4, 3), 1.5)),
    ("--octave", "0", lambda: octify.convert(torch.nn.Conv2d(3, 4, 3), octave=0)),
    ("--policy", "fast", lambda: octify.convert(torch.nn.Conv2d(3, 4, 3), policy="fast")),
    ("--stride-mode", "fast", lambda: octify.convert(torch.nn.Conv2d(3, 4, 3), stride_mode="fast")),
])
def test_same_bad_value_same_words_in_the_library_and_the_cli(option, value, call):
    with pytest.raises(ValueError) as library:
        call()
    assert_error(run("convert", CUSTOM, option, value), 2, option, str(library.value))


def test_same_bad_octave_same_error_from_every_layer_and_the_pass():
    errors = []
    for build in (lambda: octify.OctConv2d(4, 4, 3, octave=2.0), lambda: octify.OctaveSplit(4, octave=2.0),
                  lambda: octify.OctaveMerge(4, octave=2.0), lambda: octify.convert(torch.nn.Conv2d(3, 4, 3), octave=2.0)):
        with pytest.raises(TypeError) as e:
            build()
        errors.append(str(e.value).rsplit("octave", 1)[1])
    assert errors == [" must be an integer >= 1, found 2.0 (float)"] * 4


def test_untraceable_model(tmp_path):
    dyn = write(tmp_path, "dyn.py", """
        from torch import nn
        class Dyn(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3, padding=1)
                self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            def forward(self, x):
                y = self.conv(x)
                if y.sum() > 0:
                    return self.conv2(y)
                return y
    """)
    result = run("convert", dyn, "-i", SHAPE, "-o", tmp_path / "dyn_oct.safetensors")
    assert_error(result, 1, "torch.fx cannot trace", "--leaf")
    assert not (tmp_path / "dyn_oct.safetensors").exists()


def test_unknown_zoo_name():
    assert_error(run("convert", "torchvision:resnet19"), 2, "unknown torchvision model 'resnet19'", "torchvision:resnet18")


@pytest.mark.parametrize("target", ["missing_dir/m.safetensors", "."])
def test_output_path_that_cannot_be_written(tmp_path, target):
    out = tmp_path / target
    assert_error(run("convert", CUSTOM, "-i", SHAPE, "-o", out), 1, "cannot write the converted model")


def test_debug_shows_the_traceback(tmp_path):
    bad = write(tmp_path, "boom.py", "raise ValueError('broken')\n")
    result = run("convert", bad, "--debug")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ValueError: broken" in result.stderr


def test_state_dict_given_as_model(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    assert_error(run("report", tmp_path / "sd.pt"), 2, "state_dict", "--weights")


def test_weights_that_do_not_fit(tmp_path):
    torch.save({"model": {"stem.0.weight": torch.zeros(1), "extra.bias": torch.zeros(1)}}, tmp_path / "w.pth")
    assert_error(run("report", CUSTOM, "--weights", tmp_path / "w.pth"), 2, "do not fit the model", "missing keys", "1 unexpected key (extra.bias)")
    torch.save({"epoch": 1, "optimizer": {}}, tmp_path / "o.pth")
    assert_error(run("report", CUSTOM, "--weights", tmp_path / "o.pth"), 1, "expected a state_dict")
    assert_error(run("report", CUSTOM, "--weights", tmp_path / "none.pth"), 2, "no such checkpoint file")


# --------------------------------------------------------------------------- model resolution (no CLI)


def test_resolution_order(tmp_path):
    f = write(tmp_path, "order.py", """
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__(); self.c = nn.Conv2d(3, 4, 3)
        model = nn.Conv2d(3, 2, 1)
        def get_model():
            return nn.Conv2d(3, 5, 1)
    """)
    assert _load.build_model(str(f)).model.out_channels == 5  # a factory first
    assert _load.build_model(f"{f}:model").model.out_channels == 2
    assert isinstance(_load.build_model(f"{f}:Net").model.c, torch.nn.Conv2d)


def test_top_level_class_is_picked(tmp_path):
    f = write(tmp_path, "nested.py", """
        from torch import nn
        class Block(nn.Module):
            def __init__(self):
                super().__init__(); self.c = nn.Conv2d(4, 4, 3)
        class Net(nn.Module):
            def __init__(self):
                super().__init__(); self.b = Block()
    """)
    assert type(_load.build_model(str(f)).model).__name__ == "Net"


def test_spec_parsing():
    assert _load.split_spec("torchvision:resnet50") == ("zoo", "torchvision", "resnet50")
    assert _load.split_spec("dir/m.py:Net") == ("file", "dir/m.py", "Net")
    assert _load.split_spec("dir/m.py") == ("file", "dir/m.py", None)
    assert _load.split_spec("m_oct.pt") == ("saved", "m_oct.pt", None)


def test_save_load_round_trip(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    path = octify.save(net, tmp_path / "net.safetensors")
    x = torch.randn(2, 3, 8, 8)
    back = octify.load(path, model=copy.deepcopy(net).train())
    assert torch.equal(back(x), net(x)) and not back.training
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(TypeError, match=r"sd\.pt holds a state_dict \(a dict of tensors\): expected a whole model"):
        octify.load(tmp_path / "sd.pt")  # read with weights_only=True: no code runs, so no need to trust it


def test_policy_option(tmp_path, monkeypatch):
    assert_error(run("convert", CUSTOM, "--policy", "fast"), 2, "--policy", "one of 'default', 'latency', 'latency-rules'")
    result = run("convert", "torchvision:mobilenet_v2", "-i", "1,3,64,64", "--policy", "latency-rules", "-o", tmp_path / "m.safetensors", "--json", "-")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    # The static rules keep every depthwise block plain: no conv converted, MACs unchanged.
    assert data["after"]["macs"] == data["before"]["macs"]
    assert all(c["alpha_out"] == 0.0 for c in data["conversion"]["convs"])
    # The measured plan: timed here, cached where OCTIFY_CACHE_DIR says, printed with its curve.
    monkeypatch.setenv("OCTIFY_CACHE_DIR", str(tmp_path / "cache"))
    result = run("convert", "torchvision:resnet18", "-i", "1,3,64,64", "--policy", "latency", "--budget", "0.9", "-o", tmp_path / "r.safetensors",
                 "--html", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Latency plan, measured on this machine</h2>" in page and "<th>alpha 0.5 ms</th>" in page and page.count("<circle") >= 1
    text = " ".join(result.stdout.split())
    assert "Latency plan (measured, " in text and "blocks at layer1.0 " in text and "trade-off (blocks' time against fidelity cost)" in text
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    plan = octify.record_of(octify.load(tmp_path / "r.safetensors")).latency_plan  # rebuilt without timing: torchvision:resnet18 from the recipe
    assert plan["latency_budget"] == 0.9 and [u["unit"] for u in plan["units"]][:2] == ["layer1.0", "layer1.1"]
    assert_error(run("convert", CUSTOM, "--budget", "0.7"), 2, "a latency or fidelity budget needs policy='latency'")


# --------------------------------------------------------------------------- octify export
@pytest.mark.parametrize(
    "fmt,args,suffix",
    [
        ("onnx", (), ".onnx"),
        ("onnx", ("--onnx-exporter", "legacy", "--no-freeze"), ".onnx"),
        ("torchscript", (), ".torchscript.pt"),
        ("exported-program", (), ".pt2"),
    ],
)
def test_export_writes_reruns_and_prints_the_difference(converted, tmp_path, fmt, args, suffix):
    tmp, _, _ = converted
    result = run("export", tmp / "out.safetensors", "-f", fmt, *args, "-o", tmp_path / f"m{suffix}", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["format"] == fmt and data["frozen"] == ("--no-freeze" not in args)
    assert data["input_shapes"] == [[int(v) for v in SHAPE.split(",")]]  # the shape it was converted on
    assert 0 <= data["rel_diff"] < 1e-4 and (tmp_path / f"m{suffix}").stat().st_size > 10_000
    runtime = "onnxruntime" if fmt == "onnx" else "torch.jit.load" if fmt == "torchscript" else "torch.export.load"
    assert data["runtime"].startswith(runtime)
    assert f"Reran it with {runtime}" in result.stdout and "largest difference from the model" in result.stdout


def test_export_default_output_name_and_input_shape(converted, tmp_path, monkeypatch):
    tmp, _, _ = converted
    monkeypatch.chdir(tmp_path)
    result = run("export", tmp / "out.safetensors", "-f", "exported-program", "-i", "3,3,40,40", "--json", "-")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["path"] == str(tmp_path / "out.pt2") and data["input_shapes"] == [[3, 3, 40, 40]]
    loaded = torch.export.load(tmp_path / "out.pt2").module()
    assert loaded(torch.randn(5, 3, 40, 40)).shape[0] == 5  # the batch stays dynamic


def test_export_refuses_an_exported_program_path_torch_cannot_load(converted, tmp_path):
    tmp, _, _ = converted
    result = run("export", tmp / "out.safetensors", "-f", "exported-program", "-o", tmp_path / "m.pt")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "octify: error: octify.export: an ExportedProgram file must end in .pt2 (torch.export.load reads only those), "
        f"found {str(tmp_path / 'm.pt')!r}"
    )


def test_export_without_onnxruntime_says_what_to_install(converted, tmp_path, monkeypatch):
    tmp, _, _ = converted
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    result = run("export", tmp / "out.safetensors", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "octify: error: exporting to ONNX with the dynamo exporter needs onnxruntime, which is not installed. "
        "Hint: pip install 'octify[export]'"
    )
    assert not (tmp_path / "m.onnx").exists()


def test_a_step_that_counts_its_progress_shows_a_bar():
    from rich.progress import ProgressBar
    from rich.text import Text

    from octify.cli.console import UI

    ui = UI()
    with ui.step("Planning") as advance:
        task = ui.progress.tasks[0]
        bar = ui.progress.columns[2]
        assert isinstance(bar.render(task), Text) and str(bar.render(task)) == ""  # a spinner alone until counted
        advance("timing 16 units", 3, 13)
        assert (task.description, task.completed, task.total) == ("Planning: timing 16 units", 3, 13)
        assert isinstance(bar.render(task), ProgressBar) and str(ui.progress.columns[3].render(task)) == " 3/13"
    assert ui.progress.tasks == []
