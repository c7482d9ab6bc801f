"""A newcomer's first hour on the command line: their own small model (trained here, its forward
flattening with ``view``), a folder of images, the path of docs/getting-started.md ("Your own
model, from the first command to an ONNX file") -- convert with weights, calibration and
fidelity, finetune, export to ONNX and run it, report, HTML -- and then the mistakes people make
(docs/cli.md, "Errors"), each answered in one line that says what to do, with exit code 2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import octify
from conftest import assert_error, pipe_env, reload, run
from octify.cli.console import _describe, _without_fx_call_dumps
from octify.errors import ConversionError, OptionError
from octify.record import model_name

MODEL_FILE = '''
import torch
from torch import nn
import torch.nn.functional as F


class SmallNet(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.b2 = nn.BatchNorm2d(32)
        self.c3 = nn.Conv2d(32, 32, 3, padding=1)
        self.c4 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.b4 = nn.BatchNorm2d(64)
        self.c5 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, classes)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.b2(self.c2(x)))
        x = F.relu(self.c3(x))
        x = F.relu(self.b4(self.c4(x)))
        x = F.relu(self.c5(x))
        x = F.adaptive_avg_pool2d(x, 2)
        return self.fc(x.view(x.size(0), -1))
'''
CLASSES = ("checks", "h_stripes", "v_stripes")
SHAPE = "1,3,32,32"


def _image(kind: str, rng: np.random.Generator) -> Image.Image:
    """A 40x40 photo-like texture of ``kind``: random colours, period, phase and noise."""
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float32)
    period, phase = rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
    wave = {"h_stripes": np.sin(2 * np.pi * yy / period + phase), "v_stripes": np.sin(2 * np.pi * xx / period + phase),
            "checks": np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period + phase)}[kind]
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = a + (b - a) * (wave[..., None] > 0) + rng.normal(0, 12, (40, 40, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """mynet.py, 60 labelled images in class folders, 30 unlabelled ones, and w.pth: SmallNet
    trained on the labelled images as the CLI prepares them (resized, centre-cropped, normalised)."""
    d = tmp_path_factory.mktemp("first_hour")
    (d / "mynet.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(0)
    for k, kind in enumerate(CLASSES):
        (d / "imgs" / kind).mkdir(parents=True)
        for i in range(20):
            _image(kind, rng).save(d / "imgs" / kind / f"{i}.png")
    (d / "flat").mkdir()
    for i in range(30):
        _image(CLASSES[i % 3], rng).save(d / "flat" / f"{i}.jpg", quality=95)

    from torchvision.datasets import ImageFolder

    from octify.cli.data import ImagePrep

    data = ImageFolder(str(d / "imgs"), transform=ImagePrep(size=(32, 32)).transform())
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    namespace: dict = {}
    exec(compile(MODEL_FILE, "mynet.py", "exec"), namespace)
    torch.manual_seed(0)
    net = namespace["SmallNet"]()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(150):
        idx = torch.randperm(len(x))[:30]
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    assert accuracy == 1.0, accuracy  # a trained original: fidelity and accuracy below mean something
    torch.save(net.state_dict(), d / "w.pth")
    return d


def octify_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``octify ARGS`` as a user runs it, its output to a pipe."""
    return subprocess.run([sys.executable, "-m", "octify.cli", *map(str, args)], capture_output=True, text=True,
                          env=pipe_env(), cwd=cwd, timeout=300)


@pytest.mark.slow
def test_the_path_a_newcomer_walks(project):
    d = project
    # 1. convert with the trained weights, calibrated on unlabelled images, measured on labelled ones
    done = octify_cli(d, "convert", "mynet.py:SmallNet", "--weights", "w.pth", "-i", SHAPE, "-o", "oct.safetensors", "--calibration", "flat",
                      "--fidelity", "imgs", "--html", "convert.html", "--json", "convert.json")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "warning" not in out + done.stderr  # the classifier head's merge is expected: recorded, not warned about
    assert "merge before .view() (1): .view() flattens each sample to a vector (a classifier's head): merged, as expected" in out
    assert ("Calibration data: flat: 30 images, no labels; shorter side resized to 32, centre-cropped to 32x32, "
            "ImageNet-normalised (--resize, --normalize change it)") in out
    assert "Fidelity data: imgs: 60 images in 3 class folders; shorter side resized to 32" in out
    report = json.loads((d / "convert.json").read_text())
    fid, cal = report["fidelity"], report["conversion"]["calibration"]
    assert (fid["samples"], fid["original_accuracy"]) == (60, 1.0) and fid["agreement"] >= 0.5
    assert cal["samples"] == 30 and cal["rel_error"][cal["chosen"]] == min(cal["rel_error"].values())
    assert cal["batch_norms_corrected"] in (0, 2)  # the model has 2 batch norms
    # Prose reaches a pipe unwrapped: each message is one line, however long.
    saved = next(line for line in out.splitlines() if line.startswith("Saved oct.safetensors"))
    assert saved.endswith("Load it with octify.load('oct.safetensors', model=SmallNet()) (the original, as mynet.py:SmallNet builds it), "
                          "or give it as MODEL to octify commands.") and len(saved) > 80
    assert f"Fidelity to the original on 60 samples: rel. error {fid['rel_error']:.4f}, top-1 agreement {fid['agreement']:.2%}" in out
    next_line = next(line for line in out.splitlines() if line.startswith("Next:"))
    assert "--fidelity" not in next_line and "octify finetune" in next_line  # fidelity was measured just now
    page = (d / "convert.html").read_text()
    assert "<h2>Fidelity to the original on 60 samples</h2>" in page and f"{fid['agreement']:.2%}" in page
    assert "<h2>Calibration</h2>" in page and f"{cal['rel_error'][cal['chosen']]:.4f}" in page

    # 2. finetune: few held-out images are called too few; the kept weights are never worse
    done = octify_cli(d, "finetune", "mynet.py:SmallNet", "oct.safetensors", "--weights", "w.pth", "--data", "imgs", "--steps", "20",
                      "--batch-size", "16", "--lr", "0.001", "--holdout", "0.2", "-o", "tuned.safetensors", "--json", "tune.json")
    assert done.returncode == 0, done.stderr
    assert "warning: only 12 held-out samples: one sample moves the agreement by 8.3%, too coarse" in done.stdout
    tune = json.loads((d / "tune.json").read_text())
    assert tune["after"]["agreement"] >= tune["before"]["agreement"]
    assert tune["after"]["rel_error"] <= tune["before"]["rel_error"]
    assert tune["after"] == next(h for h in tune["history"] if h["step"] == tune["kept_step"])
    original_row = next(line.strip("│ ") for line in done.stdout.splitlines() if line.strip("│ ").startswith("original"))
    assert original_row.split() == ["original", "│", "│", "│", "│", "100.00%"]  # the original's accuracy, beside the converted model's

    # 3. export to ONNX with names of one's choosing, and run the file with a batch of 3
    done = octify_cli(d, "export", "tuned.safetensors", "-o", "tuned.onnx", "--input-name", "image", "--output-name", "logits")
    assert done.returncode == 0, done.stderr
    # the converted class name, kept by the file; the model made again from the original the file names
    assert "Loaded OctSmallNet saved in tuned.safetensors, rebuilt from mynet.py:SmallNet" in done.stdout
    assert "Inputs: image (1x3x32x32, any batch); outputs: logits (--input-name, --output-name set them)" in done.stdout
    import onnxruntime as ort

    session = ort.InferenceSession(str(d / "tuned.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["logits"]
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = reload(d / "tuned.safetensors")(x)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)

    # 4. report, and its HTML page
    done = octify_cli(d, "report", "tuned.safetensors", "--html", "tuned.html")
    assert done.returncode == 0, done.stderr
    assert "OctSmallNet, input 1x3x32x32 float32 (batch 1)" in done.stdout
    assert (d / "tuned.html").read_text().startswith("<!DOCTYPE html>")


# --------------------------------------------------------------------------- the mistakes


@pytest.fixture(scope="module")
def converted(project) -> Path:
    result = run("convert", project / "mynet.py:SmallNet", "--weights", project / "w.pth", "-i", SHAPE, "-o", project / "c.safetensors", "-q")
    assert result.exit_code == 0, result.stderr
    return project / "c.safetensors"


def test_a_data_option_is_named_as_typed_and_a_folder_without_classes_is_data(project, converted):
    net, w = project / "mynet.py:SmallNet", project / "w.pth"
    assert_error(run("convert", net, "--weights", w, "-i", SHAPE, "-o", project / "x.safetensors", "--fidelity", project / "dat"), 2,
                 f"--fidelity {project / 'dat'}: expected a directory of images (one folder per class for labels) or file.py:FACTORY, found nothing there")
    assert_error(run("convert", net, "--weights", w, "-i", SHAPE, "-o", project / "x.safetensors", "--calibration", project / "mynet.py"), 2,
                 "--calibration", "has no function make_dataset()")
    empty = project / "empty"
    empty.mkdir(exist_ok=True)
    assert_error(run("convert", net, "--weights", w, "-i", SHAPE, "-o", project / "x.safetensors", "--calibration", empty), 2,
                 f"--calibration {empty}: expected a directory of images (.jpg, .jpeg, .png", "found none in it or below it")


def test_finetune_mistakes_say_what_to_do(project, converted):
    net, w, imgs = project / "mynet.py:SmallNet", project / "w.pth", project / "imgs"
    common = ["--data", imgs, "--steps", "2", "-o", project / "t.safetensors"]
    assert_error(run("finetune", net, converted, "--weights", w, *common, "--batch-size", "128"), 2,
                 f"--batch-size 128 is larger than the 54 training samples of {imgs}: expected at most 54. Hint: --batch-size 32, or more data.")
    state_dict = project / "w_as_model.pt"
    torch.save(torch.load(w), state_dict)
    assert_error(run("finetune", net, state_dict, "--weights", w, *common), 2,
                 "CONVERTED", "holds a state_dict (a dict of tensors)", "a state_dict goes to --weights, for MODEL")
    assert_error(run("finetune", converted, net, "--weights", w, *common), 2,
                 f"MODEL {converted} is a model converted by octify", "Hint: MODEL (the original) comes first, then CONVERTED")
    assert_error(run("finetune", net, converted, "--model-arg", "classes=5", "--allow-random-teacher", *common), 2,
                 f"CONVERTED {converted} was saved from a model of another structure than the one rebuilt from the model given (SmallNet)",
                 "(first difference: fc.weight is 3x256 F32 in the file, 5x256 F32 in the model rebuilt)",
                 "Hint: pass the original the file was converted from (and the same --model-arg)")
    assert_error(run("finetune", net, converted, *common), 2,
                 "MODEL has the random weights its constructor drew (no --weights given)", "--allow-random-teacher for a dry run")
    assert not (project / "t.safetensors").exists()


def test_weights_and_shapes_that_cannot_be_right(project):
    net = project / "mynet.py:SmallNet"
    assert_error(run("convert", net, "--weights", project / "imgs" / "checks" / "0.png", "-i", SHAPE, "-o", project / "x.safetensors"), 2,
                 "0.png is a PNG image: expected a checkpoint written by torch.save", "Hint: --weights takes the trained model's weights")
    assert_error(run("convert", net, "--weights", project / "w.pth", "-i", "1,3,32", "-o", project / "x.safetensors"), 2,
                 "--input-shape 1,3,32 has 3 dimensions: the model's first Conv2d takes 4 (N,C,H,W). Hint: pass --input-shape N,C,H,W")
    assert not (project / "x.safetensors").exists()


def test_no_verify_writes_only_a_model_that_runs(project, monkeypatch):
    import octify.cli.commands as commands

    def broken_convert(model, alpha, **kwargs):
        class Broken(torch.nn.Module):
            def forward(self, x):
                raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x64 and 256x3)\nmore of torch's text")

        return Broken()

    monkeypatch.setattr(commands, "convert_model", broken_convert)
    out = project / "unverified.safetensors"
    assert_error(run("convert", project / "mynet.py:SmallNet", "--weights", project / "w.pth", "-i", SHAPE, "-o", out, "--no-verify"), 1,
                 "the converted model does not run on the example input 1x3x32x32: RuntimeError: mat1 and mat2 shapes cannot be multiplied "
                 "(1x64 and 256x3); nothing was written. Hint: keep the part that fails plain with --exclude GLOB or --leaf GLOB.")
    assert not out.exists()


def test_the_command_line_gives_its_own_hint_and_hides_torch_fx_dumps(capsys):
    e = ConversionError("it fails.", hint="pass verify=False.", cli_hint="pass --no-verify.")
    assert str(e) == "it fails. Hint: pass verify=False."  # the library's words in Python
    assert _describe(e) == (1, "it fails. Hint: pass --no-verify.")  # the flags' on the command line
    assert _describe(ConversionError("it fails.", hint="pass verify=False.")) == (1, "it fails. Hint: pass verify=False.")
    assert _describe(OptionError("alpha must be a number in [0, 1], found 2")) == (2, "alpha must be a number in [0, 1], found 2")
    gm = torch.fx.symbolic_trace(torch.nn.Linear(4, 2))
    with _without_fx_call_dumps(enabled=True), pytest.raises(RuntimeError):
        gm(torch.randn(1, 3))
    print("after", file=sys.stderr)
    assert capsys.readouterr().err == "after\n"
    with _without_fx_call_dumps(enabled=False), pytest.raises(RuntimeError):  # --debug keeps it
        gm(torch.randn(1, 3))
    assert "Call using an FX-traced Module" in capsys.readouterr().err


def test_help_shows_types_only_for_options_that_take_a_value():
    result = run("finetune", "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout and "<str>" not in result.stdout
    assert "--allow-random-teacher" in result.stdout and "DATA" in result.stdout
    assert "pip install 'octify[export]'" in " ".join(run("export", "--help").stdout.split())
    assert "any MODEL form above" not in run("export", "--help").stdout


def test_a_converted_model_keeps_its_class_name_through_the_file_and_copies(tmp_path):
    conv = lambda c_in: torch.nn.Conv2d(c_in, 8, 3, padding=1)  # noqa: E731
    net = torch.nn.Sequential(conv(3), conv(8), conv(8), torch.nn.Conv2d(8, 2, 1)).eval()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16))
    assert type(oct_net).__name__ == "OctSequential" and octify.record_of(oct_net).converted
    assert type(octify.load(octify.save(oct_net, tmp_path / "n.safetensors"), model=net)).__name__ == "OctSequential"
    # torch.fx names a copy "GraphModule" again; the record keeps the name for reports and messages
    tuned = copy.deepcopy(oct_net)
    assert type(tuned).__name__ == "GraphModule" and model_name(tuned) == "OctSequential"
    assert octify.report.profile(tuned, torch.randn(1, 3, 16, 16)).model == "OctSequential"


def test_a_plain_model_that_flattens_with_view_freezes_and_exports(tmp_path):
    namespace: dict = {}
    exec(compile(textwrap.dedent(MODEL_FILE), "mynet.py", "exec"), namespace)
    net = namespace["SmallNet"]().eval()
    x = torch.randn(2, 3, 32, 32)
    frozen = octify.freeze(net, example_inputs=x)  # channels-last: the view must see the contiguous map it was written for
    torch.testing.assert_close(frozen(x), net(x), rtol=1e-4, atol=1e-5)


def test_how_images_are_prepared_is_said_and_can_be_changed(project):
    from octify.cli.data import ImagePrep

    result = run("convert", project / "mynet.py:SmallNet", "--weights", project / "w.pth", "-i", SHAPE, "-o", project / "p.safetensors",
                 "--calibration", project / "flat", "--resize", "40", "--normalize", "0.5/0.25")
    assert result.exit_code == 0, result.stderr
    assert ("Calibration data: " + str(project / "flat") + ": 30 images, no labels; shorter side resized to 40, centre-cropped to 32x32, "
            "normalised by mean (0.5, 0.5, 0.5) and std (0.25, 0.25, 0.25) (--resize, --normalize change it)") in " ".join(result.stdout.split())
    image = Image.open(project / "imgs" / "checks" / "0.png")
    raw = ImagePrep(size=(32, 32), resize=40, mean=None, std=None).transform()(image)
    assert raw.shape == (3, 32, 32) and 0.0 <= raw.min() and raw.max() <= 1.0
    normalised = ImagePrep(size=(32, 32), resize=40, mean=(0.5,) * 3, std=(0.25,) * 3).transform()(image)
    torch.testing.assert_close(normalised, (raw - 0.5) / 0.25)
    assert_error(run("convert", project / "mynet.py:SmallNet", "-i", SHAPE, "--normalize", "0.5"), 2,
                 "malformed --normalize '0.5': expected")


def test_a_file_converted_from_random_weights_says_so_downstream(project, tmp_path):
    net, w = project / "mynet.py:SmallNet", project / "w.pth"
    result = run("convert", net, "-i", SHAPE, "-o", tmp_path / "r.safetensors", "-q")
    assert result.exit_code == 0 and octify.record_of(reload(tmp_path / "r.safetensors")).random_weights
    assert not octify.record_of(reload(run_ok_convert(net, w, tmp_path / "t.safetensors"))).random_weights
    exported = run("export", tmp_path / "r.safetensors", "-o", tmp_path / "r.onnx")
    assert exported.exit_code == 0, exported.stderr
    text = " ".join(exported.stdout.split())
    assert "(its constructor's random weights)" in text and "the file computes nothing useful" in text
    tuned = run("finetune", net, tmp_path / "r.safetensors", "--weights", w, "--data", project / "imgs", "--steps", "1", "--batch-size", "8",
                "-o", tmp_path / "rt.safetensors")
    assert tuned.exit_code == 0, tuned.stderr
    assert f"{tmp_path / 'r.safetensors'} was converted from MODEL's random initial weights" in " ".join(tuned.stdout.split())


def run_ok_convert(net: Path, weights: Path, out: Path) -> Path:
    result = run("convert", net, "--weights", weights, "-i", SHAPE, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    return out


def test_convert_reconstructs_on_unlabelled_images_and_says_what_it_did(project):
    d = project
    result = run("convert", d / "mynet.py:SmallNet", "--weights", d / "w.pth", "-i", SHAPE, "-o", d / "rec.safetensors",
                 "--reconstruct", d / "flat", "--fidelity", d / "imgs")
    assert result.exit_code == 0, result.stderr
    rec = octify.record_of(reload(d / "rec.safetensors")).reconstruction
    assert rec["samples"] == 30 and rec["layers"] >= 2 and rec["kept"] == "reconstructed"
    assert rec["rel_error_after"] < rec["rel_error_before"]
    line = (f"Reconstructed {rec['layers']} octave layers on 30 samples: rel. error {rec['rel_error_before']:.4f} -> "
            f"{rec['rel_error_after']:.4f} there")
    assert line in " ".join(result.stdout.split())
