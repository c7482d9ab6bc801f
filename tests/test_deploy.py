"""Every path a converted model takes to deployment gives the numbers eager mode gives (issue 12).

Models: a ResNet, a MobileNetV3 (squeeze-excitation, hardswish, depthwise), and a small net with
squeeze-excitation, a concatenation and a depthwise conv. Forms: the converted model (plain,
batch norms unfolded), ``octify.freeze`` of it (batch norms folded, fused low weights), and the
frozen form with its 1x1 octave convs as matrix products (``matmul_1x1=True``), each in both
memory formats. Paths: ONNX with
both exporters run in onnxruntime with another batch size, ``torch.export`` with a dynamic
batch, ``torch.jit.trace`` with its checks, ``torch.jit.script``, ``torch.fx.symbolic_trace``.
"""

from __future__ import annotations

import copy
import gc
import io
import warnings
from typing import Callable, Dict

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import octify

from conftest import randomize_bn, rel_err

TOL = 1e-4
X = (2, 3, 128, 128)  # large enough that every block's low branch is more than one pixel


class SEConcatNet(nn.Module):
    """Squeeze-excitation, a concatenation of two branches and a depthwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.fuse = nn.Conv2d(24, 32, 1)
        self.down = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        y = self.dw(self.stem(x))
        s = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(F.adaptive_avg_pool2d(y, 1)))))
        y = y * s
        y = F.relu(self.fuse(torch.cat([self.a(y), self.b(y)], 1)))
        y = F.relu(self.down(y))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


MODELS: Dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(),
    "se_concat_dw": SEConcatNet,
}
FORMS = ["converted", "frozen", "frozen-matmul", "frozen-merged"]
FORMATS = ["channels_last", "preserve"]


def _original(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(MODELS[name](), 0).eval()


_CACHE: Dict[tuple, nn.Module] = {}


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_state():
    """Exporters and TorchScript keep what they compiled (types, graphs) for the life of the
    process; drop it after this module, so that the tests after it (the zoo's large networks)
    have the memory back."""
    yield
    _CACHE.clear()
    torch._dynamo.reset()
    torch.jit._state._clear_class_state()
    torch.jit._recursive.concrete_type_store.type_store.clear()
    gc.collect()


def _as(form: str, converted: nn.Module, memory_format: str = "channels_last") -> nn.Module:
    if form == "converted":
        return converted
    # frozen-matmul: the 1x1 octave convs as torch.mm / addmm; frozen-merged: L->H in the low output's conv
    merged = form == "frozen-merged"
    return octify.freeze(converted, memory_format=memory_format, matmul_1x1=form == "frozen-matmul", merge_lh=merged)


def _model(name: str, form: str, memory_format: str) -> nn.Module:
    key = (name, form, memory_format)
    if key not in _CACHE:
        x = torch.randn(*X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = octify.convert(_original(name), alpha=0.5, example_inputs=x, memory_format=memory_format).eval()
        _CACHE[key] = _as(form, m, memory_format)
    return copy.deepcopy(_CACHE[key])


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(*X, generator=g), torch.randn(3, *X[1:], generator=g)  # export batch, run batch


def _onnx(model: nn.Module, x: torch.Tensor, dynamo: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=256)
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes={"x": {0: batch}}, verbose=False)
        data = program.model_proto.SerializeToString()
    else:
        buf = io.BytesIO()
        # output_names: without them the legacy exporter mistakes a GraphModule's torch.fx graph
        # for a TorchScript one (it looks for model.graph.outputs()).
        torch.onnx.export(
            model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}
        )
        data = buf.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda t: torch.from_numpy(session.run(None, {name: t.numpy()})[0])


def _export(model: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    batch = torch.export.Dim("batch", min=1, max=256)
    return torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}}).module()


PATHS: Dict[str, Callable[[nn.Module, torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "onnx-legacy": lambda m, x: _onnx(m, x, dynamo=False),
    "onnx-dynamo": lambda m, x: _onnx(m, x, dynamo=True),
    "torch.export": _export,
    "jit.trace": lambda m, x: torch.jit.trace(m, (x,), check_trace=True),
    "jit.script": lambda m, x: torch.jit.script(m),
    "fx.symbolic_trace": lambda m, x: torch.fx.symbolic_trace(m),
}


@pytest.mark.slow  # 90 exports, a few minutes: make test runs them, make test-fast does not
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(
    "form,memory_format", [(f, m) for f in FORMS for m in FORMATS if m == "channels_last" or f in ("converted", "frozen")]
)  # matrix products on NCHW maps copy them first: not a layout anyone deploys; the merged form is int8's, channels-last
@pytest.mark.parametrize("name", list(MODELS))
def test_every_deployment_path_agrees_with_eager(name: str, form: str, memory_format: str, path: str) -> None:
    model = _model(name, form, memory_format)
    x, x_run = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporters' and TorchScript's deprecation notices
        with torch.no_grad():
            deployed = PATHS[path](model, x)
            got = deployed(x_run)
            want = model(x_run)
    assert got.shape == want.shape == (3, 1000 if name != "se_concat_dw" else 10)
    assert rel_err(got, want) <= TOL, f"{path}: {rel_err(got, want):.2e}"


@pytest.mark.parametrize("form", FORMS)
def test_exports_keep_the_octave_structure(form: str) -> None:
    """The exported graph runs the low branch at half resolution: it is the octave model that is
    exported, not something equivalent that lost the saving."""
    model = _model("se_concat_dw", form, "channels_last")
    x, _ = _inputs()
    program = torch.export.export(model, (x,))
    pools = [n for n in program.graph.nodes if n.op == "call_function" and "avg_pool2d" in str(n.target)]
    convs = [n for n in program.graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
    low_convs = [n for n in convs if n.meta["val"].shape[-1] == X[-1] // 2]  # convs on the low grid
    assert pools and low_convs


def _oracle(name: str) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    original = _original(name)
    x = _inputs()[0]
    converted = octify.convert(original, alpha=0.5, octave=1, example_inputs=x).eval()
    return original, converted, x


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_in_eval_is_as_close_to_float32_as_the_original_is(form: str, dtype: torch.dtype) -> None:
    original, converted, x = _oracle("mobilenet_v3_small")
    model = _as(form, converted)
    with torch.no_grad():
        ref = original(x)
        with torch.autocast("cpu", dtype=dtype):
            got, base = model(x), original(x)
    assert got.dtype == base.dtype == dtype
    assert rel_err(got.float(), ref) < max(2 * rel_err(base.float(), ref), 2e-3)


def test_autocast_training_matches_the_original_step() -> None:
    original, converted, x = _oracle("resnet18")
    original.train()
    converted.train()
    grads = []
    for m in (original, converted):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = m(x).float().logsumexp(1).mean()
        loss.backward()
        grads.append((loss.detach(), m.fc.weight.grad.clone()))
    (l0, g0), (l1, g1) = grads
    assert torch.isfinite(g1).all()
    assert abs(float(l1 - l0)) < 2e-2 * abs(float(l0))
    assert rel_err(g1, g0) < 5e-2


@pytest.mark.parametrize("form", FORMS)
def test_half_and_double_give_the_originals_numbers(form: str) -> None:
    original, converted, x = _oracle("resnet18")
    model = _as(form, converted)
    with torch.no_grad():
        d = rel_err(copy.deepcopy(model).double()(x.double()), copy.deepcopy(original).double()(x.double()))
        h_oct = rel_err(copy.deepcopy(model).half()(x.half()).float(), original(x))
        h_base = rel_err(copy.deepcopy(original).half()(x.half()).float(), original(x))
    assert d < (1e-12 if form == "converted" else 1e-6)  # frozen: the batch norms were folded in float32
    assert h_oct < max(2 * h_base, 2e-3)


@pytest.mark.parametrize("form", FORMS)
def test_writes_through_data_optimizer_steps_and_load_state_dict_are_seen(form: str) -> None:
    model = _model("resnet18", form, "channels_last")
    x, _ = _inputs()
    with torch.no_grad():
        y0 = model(x)  # whatever a forward may remember, it has now seen the old weights
        for p in model.parameters():
            p.data.mul_(0.9)  # how EMA / teacher updates edit weights: no version counter moves
        y1 = model(x)
        assert rel_err(y1, y0) > 1e-2
        assert rel_err(y1, copy.deepcopy(model)(x)) == 0.0

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        y2 = model(x)
        assert rel_err(y2, y1) > 1e-3
        assert rel_err(y2, copy.deepcopy(model)(x)) == 0.0

        other = _model("resnet18", form, "channels_last")
        model.load_state_dict(other.state_dict())
        assert rel_err(model(x), other(x)) == 0.0


@pytest.mark.parametrize("form", FORMS)
def test_flop_counter_agrees_with_octify_profile(form: str) -> None:
    model = _model("mobilenet_v3_small", form, "channels_last")
    x, _ = _inputs()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    profiled = octify.profile(model, x)
    assert counter.get_total_flops() == profiled.flops > 0
    converted = _model("mobilenet_v3_small", "converted", "channels_last")
    # Matrix products count as the 1x1 convs they replace; a merged layer's zeros count as what they cost.
    assert octify.profile(converted, x).flops + _merged_zero_flops(model, x) == profiled.flops


def _merged_zero_flops(model: nn.Module, x: torch.Tensor) -> int:
    """The FLOPs of the zero block of each merged layer's low-resolution conv on ``x``: 2 per
    multiply-add of (L->H outputs) x (high inputs) x kernel over the low output's pixels."""
    flops, hooks = [], []
    for m in model.modules():
        if isinstance(m, octify.OctConv2d) and m.merges_lh:
            zeros = m.weight_hh.shape[0] * m.weight_hh.shape[1] * m.weight_lowres[0, 0].numel()
            hooks.append(m.register_forward_hook(lambda m, a, out, z=zeros: flops.append(2 * z * out[1][0, 0].numel() * out[1].shape[0])))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert bool(flops) == any(getattr(m, "merges_lh", False) for m in model.modules())
    return sum(flops)


def test_frozen_model_saves_and_loads_with_its_kernels(tmp_path) -> None:
    model = _model("se_concat_dw", "frozen-matmul", "channels_last")
    x, _ = _inputs()
    octify.save(model, tmp_path / "frozen.safetensors")
    loaded = octify.load(tmp_path / "frozen.safetensors", model=_original("se_concat_dw"))  # the matmul layers replayed by name
    flags = lambda m: [(n, o.runs_as_matmul, o.weight_low is not None) for n, o in m.named_modules() if isinstance(o, octify.OctConv2d)]  # noqa: E731
    assert flags(loaded) == flags(model) and any(f[1] for f in flags(model)) and any(f[2] for f in flags(model))
    assert octify.record_of(loaded).fused == octify.record_of(model).fused != []
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
