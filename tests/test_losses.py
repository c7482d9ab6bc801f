"""The distillation loss of each kind of output (issue 26): known values, how "auto" tells the
kinds apart, several outputs, a custom loss, and fine-tuning an embedding network with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify
from octify.tune.losses import OutputLoss, cosine_loss, kl_loss, output_kinds, scaled_mse


def test_each_loss_gives_its_known_value():
    t = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert cosine_loss(2 * t, t).item() == pytest.approx(0.0, abs=1e-7)  # the scale of an embedding is free
    assert cosine_loss(-t, t).item() == pytest.approx(2.0)
    assert cosine_loss(torch.tensor([[4.0, -3.0], [1.0, 0.0]]), t).item() == pytest.approx(0.5)  # orthogonal, equal
    y = torch.tensor([1.0, 3.0, 5.0, 7.0])  # variance 5
    assert scaled_mse(y, y).item() == 0.0
    assert scaled_mse(y + 1.0, y).item() == pytest.approx(1 / 5)
    assert scaled_mse(100 * (y + 1.0), 100 * y).item() == pytest.approx(1 / 5)  # the same at any magnitude
    logits = torch.tensor([[2.0, 0.0]])
    p, q = torch.softmax(logits / 4, 1), torch.softmax(torch.zeros(1, 2), 1)
    want = 16 * (p * (p / q).log()).sum()
    assert kl_loss(torch.zeros(1, 2), logits, 4.0).item() == pytest.approx(want.item())


class Heads(nn.Module):
    """A small backbone with the heads of every kind the loss tells apart."""

    def __init__(self, head: str) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = head
        self.fc = nn.Linear(8, 5)
        self.seg = nn.Conv2d(8, 4, 1)
        self.depth = nn.Conv2d(8, 1, 1)
        self.rgb = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        f = self.body(x)
        pooled = F.adaptive_avg_pool2d(f, 1).flatten(1)
        if self.head == "classifier":
            return self.fc(pooled)
        if self.head == "embedding":
            return pooled
        if self.head == "normalized":
            return F.normalize(self.fc(pooled), dim=1)  # a metric-learning projection
        if self.head == "segmentation":
            return self.seg(f)
        if self.head == "depth":
            return self.depth(f)
        if self.head == "denoise":
            return x - self.rgb(f)
        if self.head == "pyramid":
            return {"p1": f, "p2": F.avg_pool2d(f, 2)}
        return {"logits": self.fc(pooled), "pooler_output": pooled}


@pytest.mark.parametrize("head, kinds", [
    ("classifier", [("output", "scores")]),
    ("embedding", [("output", "embedding")]),
    ("normalized", [("output", "embedding")]),
    ("segmentation", [("output", "dense_scores")]),
    ("depth", [("output", "map")]),
    ("denoise", [("output", "map")]),  # as many channels as the input: an image, not 3 class scores
    ("pyramid", [("['p1']", "map"), ("['p2']", "map")]),
    ("hf", [("['logits']", "scores"), ("['pooler_output']", "embedding")]),
])
def test_auto_tells_the_kind_of_each_output(head, kinds):
    torch.manual_seed(0)
    assert output_kinds(Heads(head).eval(), torch.randn(2, 3, 16, 16)) == kinds


def test_several_outputs_are_averaged_and_a_mismatch_is_refused():
    loss = OutputLoss("auto", 4.0, [("a", "map"), ("b", "embedding")])
    t = {"a": torch.tensor([1.0, 3.0, 5.0, 7.0]), "b": torch.tensor([[1.0, 0.0]])}
    s = {"a": torch.full((4,), 4.0), "b": torch.tensor([[0.0, 1.0]])}  # scaled MSE 1, cosine loss 1
    assert loss(s, t).item() == pytest.approx(1.0)
    assert loss({"a": t["a"], "b": s["b"]}, t).item() == pytest.approx(0.5)
    assert loss.describe() == "mse on a (map); cosine on b (embedding)"
    with pytest.raises(ValueError, match=r"the original returns 1 floating-point outputs and the converted model 2, expected 2"):
        loss(s, t["a"])
    assert OutputLoss("mse", 4.0, [("output", "scores")]).describe() == "mse on output (scores)"


def test_a_bad_loss_is_refused():
    with pytest.raises(ValueError, match=r"loss must be one of 'auto', 'kl', 'cosine', 'mse', found 'l2'"):
        octify.FinetuneOptions(steps=1, loss="l2")


def _mean_cosine(a: nn.Module, b: nn.Module, xs: list) -> float:
    with torch.no_grad():
        return torch.cat([F.cosine_similarity(a(x), b(x), dim=1) for x in xs]).mean().item()


class Embedder(nn.Module):
    """Pooled features without a head; no biases, so that the embedding's direction depends on the image."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)


def test_finetune_brings_an_embedding_back_with_the_cosine_loss_auto_picks():
    torch.manual_seed(0)
    net = Embedder().eval()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16), alpha=0.5, min_size=4)
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(16, 3, 16, 16, generator=g) for _ in range(8)]
    held = [torch.randn(64, 3, 16, 16, generator=g)]
    before = _mean_cosine(net, oct_net, held)
    tuned = {loss: octify.finetune(net, oct_net, data, steps=40, lr=0.05, validation=held, loss=loss) for loss in ("auto", "kl")}
    record = octify.record_of(tuned["auto"]).finetune
    assert record["loss"] == "cosine on output (embedding)"
    assert record["measure"] == "cosine"  # top-1 "agreement" means nothing on an embedding, nor does its scale
    after = {loss: _mean_cosine(net, m, held) for loss, m in tuned.items()}
    # Measured: 0.980 before, 0.998 with the cosine loss, 0.993 with KL over the embedding's dims.
    assert before < 0.99 and after["auto"] > before + 0.8 * (1 - before) and after["auto"] > after["kl"], (before, after)


def test_a_callable_loss_replaces_the_built_in_ones(tmp_path):
    torch.manual_seed(0)
    net = Heads("depth").eval()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16), alpha=0.5, min_size=4)
    seen = []

    def l1(student, teacher):
        seen.append((tuple(student.shape), tuple(teacher.shape)))
        return (student - teacher).abs().mean()

    data = [torch.randn(4, 3, 16, 16) for _ in range(2)]
    tuned = octify.finetune(net, oct_net, data, steps=2, lr=0.01, keep_best="last", loss=l1, checkpoint=str(tmp_path / "ck.pt"))
    assert seen == [((4, 1, 16, 16), (4, 1, 16, 16))] * 2
    assert octify.record_of(tuned).finetune["loss"] == "custom (l1)"
    # The checkpoint names the function; resuming with another loss is another run.
    with pytest.raises(ValueError, match=r"loss='test_losses.test_a_callable_loss_replaces_the_built_in_ones.<locals>.l1' there, 'mse' here"):
        octify.finetune(net, oct_net, data, steps=2, keep_best="last", loss="mse", checkpoint=str(tmp_path / "ck.pt"))
