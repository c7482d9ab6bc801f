"""What a new user reads: the summary report at 80 and 100 columns and in a pipe, --layers,
--html (rendered in a real headless browser where one is installed), the warnings for globs that
match nothing, the headline when nothing changes, --latency's spread, a saved octave model's
report, and a command line that answers --help without importing torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import pipe_env, run, write

import octify
from octify.report._stages import stages
from octify.report._timing import Latency

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = ROOT / "examples" / "custom_cnn.py"
OCTIFY = [sys.executable, "-m", "octify.cli"]


DEEP_NET = """
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c, stride=1):
            super().__init__()
            self.conv_expand = nn.Conv2d(c, c, 3, stride, 1, bias=False)
            self.norm_expand = nn.BatchNorm2d(c)
            self.shortcut = nn.Sequential()  # empty: returns its input
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.norm_expand(self.conv_expand(x)) + self.shortcut(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.stages = nn.ModuleList([nn.Sequential(*[Block(16) for _ in range(12)]) for _ in range(3)])

        def forward(self, x):
            x = self.stem(x)
            for s in self.stages:
                x = s(x)
            return x

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.encoder(x).mean((2, 3)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone_with_a_long_name = Classifier()

        def forward(self, x):
            return self.backbone_with_a_long_name(x)
"""


@pytest.fixture(scope="module")
def deep_net(tmp_path_factory):
    return write(tmp_path_factory.mktemp("deep"), "deep_net.py", DEEP_NET)


def conv_names(model_py: Path) -> list:
    ns: dict = {}
    exec(model_py.read_text(), ns)
    return [n for n, m in ns["Net"]().named_modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("columns", [80, 100])
def test_summary_and_layers_fit_the_width_and_never_cut_a_name(deep_net, tmp_path, columns):
    result = run("convert", deep_net, "-i", "1,3,32,32", "--layers", "-o", tmp_path / "o.safetensors", columns=columns)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert max(len(line.rstrip()) for line in out.splitlines()) <= columns
    assert "…" not in out and "..." not in out.replace("stem..", "")  # rich cuts with an ellipsis
    # Names: the prefix all of them share goes to the title; every conv's own part is there whole.
    assert "Layers with MACs (names under backbone_with_a_long_name.)" in out
    names = conv_names(deep_net)
    assert len(names) == 37
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("encoder.") and "Conv2d" in line]
    assert rows == [n.removeprefix("backbone_with_a_long_name.") for n in names]
    # The summary: a stage per block of 12 (the encoder holds all the work, so it is opened up).
    assert "By stage (names under backbone_with_a_long_name.)" in out
    for i in range(3):
        stage = f"encoder.stages.{i} "
        assert any(line.startswith(stage) and "12/12" in line for line in out.splitlines()), stage
    assert "How octify counts: octify convert --help" in out and "FlopCounterMode" not in out


def test_a_name_longer_than_its_column_wraps_whole(tmp_path):
    long_name = "a_very_long_module_name_that_goes_on_and_on_and_on"
    model_py = write(tmp_path, "long.py", f"""
        from torch import nn
        model = nn.Sequential()
        model.add_module("stem", nn.Conv2d(3, 8, 3, padding=1))
        model.add_module("{long_name}", nn.Conv2d(8, 8, 3, padding=1))
        model.add_module("head", nn.Conv2d(8, 4, 1))
    """)
    out = run("convert", model_py, "-i", "1,3,16,16", "--layers", "-o", tmp_path / "l.safetensors", columns=80).stdout
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(long_name[:20]) and "OctConv2d" in line)
    head, tail = lines[at].split()[0], lines[at + 1].split()[0]
    assert len(head) < len(long_name) and head + tail == long_name  # folded onto the next line, nothing dropped
    assert "…" not in out


def test_a_pipe_gets_the_tables_at_their_width_and_each_message_on_one_line(deep_net, tmp_path):
    proc = subprocess.run([*OCTIFY, "convert", str(deep_net), "-i", "1,3,32,32", "-o", str(tmp_path / "o.safetensors")],
                          capture_output=True, text=True, env=pipe_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("By stage"))):]
    assert max(len(line.rstrip()) for line in table[: table.index(next(line for line in table if line.startswith("total"))) + 1]) <= 80
    # rich would wrap at 80 columns in a pipe; a message stays whole there, for grep and logs
    saved = [line for line in lines if line.startswith("Saved ")]
    o = str(tmp_path / "o.safetensors")
    assert len(saved) == 1 and saved[0].endswith(f"Load it with octify.load({o!r}, model=Net()) (the original, as {deep_net} builds it), "
                                                 "or give it as MODEL to octify commands.") and len(saved[0]) > 80
    total = next(line for line in proc.stdout.splitlines() if line.startswith("total"))
    # 36 block convs 16*16*9*32*32 = 2,359,296 MACs each + stem 3*16*9*1024 + head 160 = 85,377,184
    assert total.split() == ["total", "36/37", "85.38", "M", "38.04", "M", "0.446", "0.641"]


def test_default_report_is_short_and_layers_adds_the_table(deep_net, tmp_path):
    short = run("convert", deep_net, "-i", "1,3,32,32", "-o", tmp_path / "a.safetensors").stdout
    full = run("convert", deep_net, "-i", "1,3,32,32", "--layers", "-o", tmp_path / "b.safetensors").stdout
    assert "Layers with MACs" not in short and "stages.2.11.conv_expand" not in short
    assert len(short.splitlines()) < 40
    assert "encoder.stages.2.11.conv_expand" in full and "OctConv2d" in full and "0.5/0.5" in full


def test_feature_maps_are_exact_when_nothing_changes(deep_net, tmp_path):
    result = run("convert", deep_net, "-i", "1,3,32,32", "--alpha", "0", "-o", tmp_path / "z.safetensors", "--json", tmp_path / "z.json")
    assert result.exit_code == 0, result.stderr
    assert "Nothing changed: none of the 37 convs was converted; alpha is 0" in result.stdout
    data = json.loads((tmp_path / "z.json").read_text())
    # The empty nn.Sequential shortcuts are not layers: before and after count the same bytes.
    assert data["ratios"]["feature_map_bytes"] == 1.0 and data["ratios"]["macs"] == 1.0
    assert not any(r["name"].endswith("shortcut") for r in data["before"]["layers"])


def test_headline_when_nothing_converts_says_why(tmp_path):
    vit = write(tmp_path, "tiny_vit.py", """
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv_proj = nn.Conv2d(3, 32, 8, stride=8)
                self.encoder = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
                self.head = nn.Linear(32, 10)

            def forward(self, x):
                x = self.conv_proj(x).flatten(2).transpose(1, 2)
                return self.head(self.encoder(x).mean(1))
    """)
    result = run("convert", vit, "-i", "1,3,32,32", "-o", tmp_path / "v.safetensors")
    assert result.exit_code == 0, result.stderr
    assert ("Nothing changed: none of the 1 convs was converted; the model's only conv, conv_proj, stays plain: "
            "stem (first conv on the model input)") in " ".join(result.stdout.split())
    mnv2 = run("convert", "torchvision:mobilenet_v2", "--policy", "latency-rules", "-i", "1,3,64,64", "-o", tmp_path / "m.safetensors")
    assert mnv2.exit_code == 0, mnv2.stderr
    assert "Nothing changed: none of the 52 convs was converted" in mnv2.stdout
    assert "latency policy: block features.1 has a depthwise conv" in mnv2.stdout  # the reasons, below it
    assert "warning:" not in mnv2.stdout  # the headline says it once


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--exclude", "layers4.*", "exclude 'layers4.*' matches no conv, so it changes nothing. Hint: did you mean 'layer4.*'"),
        ("--exclude", "layer1", "exclude 'layer1' matches no conv, so it changes nothing; it matches layer1 (Sequential), "
                                "which is not a conv. Hint: 'layer1.*' matches the convs inside it"),
        ("--alpha-for", "layer9.*=0", "alpha_for 'layer9.*' matches no conv, so it changes nothing. Hint: did you mean"),
        ("--alpha-for", "fc=0", "alpha_for 'fc' matches no conv, so it changes nothing; it matches fc (Linear), which is not a conv"),
    ],
)
def test_globs_that_match_no_conv_are_warned_about(tmp_path, option, value, says):
    result = run("convert", "torchvision:resnet18", "-i", "1,3,64,64", option, value, "-o", tmp_path / "r.safetensors")
    assert result.exit_code == 0, result.stderr
    assert f"warning: octify: {says}" in " ".join(result.stdout.split())


def test_globs_that_match_are_not_warned_about(tmp_path):
    result = run("convert", "torchvision:resnet18", "-i", "1,3,64,64", "--exclude", "layer4.*", "--alpha-for",
                 "layer3.*=0.25", "-o", tmp_path / "r.safetensors")
    assert result.exit_code == 0 and "warning" not in result.stdout


def test_the_help_examples_match_something():
    """The --alpha-for example of `convert --help` once named a Linear and did nothing."""
    import importlib.util
    import warnings

    spec = importlib.util.spec_from_file_location("_report_cli_custom_cnn", CUSTOM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    CustomCNN = module.CustomCNN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a glob that matches no conv would raise here
        octify.convert(CustomCNN().eval(), 0.5, example_inputs=torch.randn(1, 3, 64, 64), alpha_for={"stage3.*": 0.25})
    assert "--alpha-for 'stage3.*=0.25'" in run("convert", "--help", columns=120).stdout


def test_latency_shows_the_spread_and_warns_when_busy(tmp_path, monkeypatch):
    result = run("report", CUSTOM, "-i", "1,3,32,32", "--latency", "--runs", "4", "--threads", "1",
                 "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    lat = json.loads((tmp_path / "r.json").read_text())["latency"]
    assert lat["runs"] == 4 and lat["threads"] == 1 and len(lat["times_ms"]) == 4
    assert lat["min_ms"] == min(lat["times_ms"]) and lat["max_ms"] == max(lat["times_ms"])
    assert f"min {lat['min_ms']:.2f} / median {lat['median_ms']:.2f} / max {lat['max_ms']:.2f} ms of 4 runs" in result.stdout
    assert "1 thread" in result.stdout

    busy = Latency(median_ms=20.0, runs=3, warmup=3, threads=2, device="cpu", times_ms=[17.0, 20.0, 348.0])
    quiet = Latency(median_ms=20.0, runs=3, warmup=3, threads=2, device="cpu", times_ms=[19.0, 20.0, 21.0])
    assert busy.busy and not quiet.busy and quiet.warning() == ""
    import octify.report.comparison as comparison

    monkeypatch.setattr(comparison, "measure", lambda models, *a, **k: [busy, busy])
    result = run("convert", CUSTOM, "-i", "1,3,32,32", "--latency", "-o", tmp_path / "c.safetensors")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert ("warning: the timed runs spread from 17.00 to 348.00 ms (median 20.00): the machine looks busy, "
            "so the latency figures are not reliable") in text


def test_report_of_a_saved_octave_model(tmp_path):
    assert run("convert", CUSTOM, "-i", "1,3,40,40", "-o", tmp_path / "c.safetensors").exit_code == 0
    result = run("report", tmp_path / "c.safetensors", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    assert "15 OctConv2d and 8 Conv2d layers" in result.stdout  # not "1 Conv2d layer"
    assert "Input shape 1x3x40x40, the one the model was converted on" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["input_shape"] == [1, 3, 40, 40]
    total = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    assert total.split()[1:3] == ["23", "15"]  # convs, of which octave


# --------------------------------------------------------------------------- HTML
def _html(tmp_path: Path) -> Path:
    page = tmp_path / "report.html"
    result = run("convert", CUSTOM, "-i", "1,3,32,32", "--html", page, "-o", tmp_path / "c.safetensors")
    assert result.exit_code == 0, result.stderr
    assert f"Wrote the HTML report to {page}" in "".join(result.stdout.splitlines())
    return page


def test_html_is_one_self_contained_page(tmp_path):
    text = _html(tmp_path).read_text()
    head = text.split("</head>")[0]
    assert "<script" not in text and "src=" not in text and "href=" not in text and "http" not in head
    assert text.count("<svg") == 3  # MACs by stage, feature maps by stage, MACs per conv
    for needle in ("CustomCNN &rarr; OctCustomCNN", "0.567&times;", "stage1", "stage3..pool", "stage2.0.conv2",
                   "alpha 0.5 -&gt; 0.5", "Left plain: 8 of 23 convs", "stem (first conv on the model input)",
                   "Merges, splits and aligns: 1", "operator.add combines a pair with a plain map", "FlopCounterMode"):
        assert needle in text, needle


def test_report_html_of_one_model(tmp_path):
    page = tmp_path / "p.html"
    result = run("report", CUSTOM, "-i", "1,3,32,32", "--html", page)
    assert result.exit_code == 0, result.stderr
    assert page.read_text().count("<svg") == 3 and "stage2.0.conv2" in page.read_text()


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed (make test installs Debian's chromium where apt-get can)")
def test_html_renders_in_a_headless_browser(tmp_path):
    from PIL import Image

    page = _html(tmp_path)
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), proc.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 1400)
    colours = image.getcolors(maxcolors=1 << 20)
    counts = {rgb: n for n, rgb in colours}
    assert counts.get((255, 255, 255), 0) < 0.97 * 1000 * 1400  # not blank
    # both series of bars are drawn: the original's grey and the octave model's blue
    assert counts.get((0x9A, 0xA5, 0xB1), 0) > 2000 and counts.get((0x1F, 0x77, 0xB4), 0) > 2000


# --------------------------------------------------------------------------- fast start
@pytest.mark.parametrize("args, code", [(["--help"], 0), (["--version"], 0), (["convert", "--help"], 0),
                                         (["convert"], 2), (["convert", "m.py", "--alpha", "3"], 2)])
def test_the_cli_answers_without_importing_torch(args, code):
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['octify', *{args!r}]\n"
        "try:\n    runpy.run_module('octify.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "sys.stderr.write(f'\\nEXIT={code} TORCH={\"torch\" in sys.modules}\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert f"EXIT={code} TORCH=False" in proc.stderr, proc.stderr[-2000:]


def test_version_names_torch_without_importing_it():
    proc = subprocess.run([*OCTIFY, "--version"], capture_output=True, text=True, timeout=120)
    from importlib.metadata import version

    assert proc.stdout.strip() == f"octify {octify.__version__} (torch {version('torch')})"
    assert version("torch") == torch.__version__.split("+")[0]  # the installed torch, as torch names itself


# --------------------------------------------------------------------------- stages
def test_stages_open_the_group_that_holds_the_work():
    rows = [("conv1", 10), ("bn1", 0), ("features.0.conv", 40), ("features.1.conv", 40), ("features.1.act", 0),
            ("octify_merge_0", 0), ("classifier", 5)]
    got = stages(rows)
    assert [s.label for s in got] == ["conv1..bn1", "features.0", "features.1", "classifier"]
    assert got[2].names == ["features.1.conv", "features.1.act", "octify_merge_0"]  # inserted: with the layer before
    assert [n for s in got for n in s.names] == [n for n, _ in rows]  # every row once, in order
