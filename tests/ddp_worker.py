"""Run by tests/test_finetune_cli.py, alone and under torch.distributed.run: fine-tune a small
texture CNN and save the resulting state_dicts to OUT/<run>-rank<R>of<W>.pt.

Under torchrun: the global-batch run (``sync_bn=True``) and a per-process-norm run
(``sync_bn=False``, which computes something else: the test's proof that it can tell). Alone: the
same run, and once more in another rounding (PyTorch's own kernels on one thread): the same sums
in another order, which tells how far float32 rounding alone moves this training.

The network uses SiLU, not ReLU: a ReLU's gradient jumps where its input crosses zero, and an
input within rounding of zero (among 10^5 per layer, there is one) flips with the order of a sum,
so ReLU runs that differ only in rounding part by percents within a few steps (measured: 1-6%
after 8 steps between oneDNN on and off in one process). With a smooth activation, rounding
differences stay rounding-sized and the comparison can be tight.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import octify  # noqa: E402
import textures  # noqa: E402
from conftest import cpu_numerics  # noqa: E402
from octify.tune.distributed import init_from_env, rank_and_world  # noqa: E402

STEPS = 8


class SmoothBlock(textures._Block):
    def forward(self, x):
        y = self.bn2(self.conv2(F.silu(self.bn1(self.conv1(x)))))
        return F.silu(y + (x if self.short is None else self.short(x)))


def smooth_texture_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = textures.TextureNet(width=8)
    net.stem[2] = torch.nn.SiLU()
    for block in [*net.layer1, *net.layer2]:
        block.__class__ = SmoothBlock
    return net.eval()


def tune(**options) -> dict:
    net = smooth_texture_net()
    converted = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32))
    data = textures.TextureDataset(256, 0)
    return octify.finetune(net, converted, data, steps=STEPS, batch_size=32, lr=0.05, keep_best="last", **options).state_dict()


if __name__ == "__main__":
    out = Path(sys.argv[1])
    init_from_env()
    rank, world = rank_and_world()
    runs = {"global-bn": {}, "local-bn": {"sync_bn": False}} if world > 1 else {"one": {}}
    for name, options in runs.items():
        torch.save(tune(**options), out / f"{name}-rank{rank}of{world}.pt")
    if world == 1:
        with cpu_numerics("no-onednn-1thread"):
            torch.save(tune(), out / "reordered-rank0of1.pt")
    if world > 1:
        torch.distributed.destroy_process_group()
