"""Run by tests/test_finetune_cli.py, alone and under torch.distributed.run: fine-tune a small
texture CNN and save each rank's resulting state_dict to OUT/rank<R>of<W>.pt."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import octify  # noqa: E402
from octify.tune.distributed import init_from_env, rank_and_world  # noqa: E402
from textures import TextureDataset, TextureNet  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    init_from_env()
    rank, world = rank_and_world()
    torch.manual_seed(0)
    net = TextureNet(width=8).eval()
    converted = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32))
    tuned = octify.finetune(net, converted, TextureDataset(256, 0), steps=8, batch_size=32, lr=0.05)
    torch.save(tuned.state_dict(), out / f"rank{rank}of{world}.pt")
    if world > 1:
        torch.distributed.destroy_process_group()
