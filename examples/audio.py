"""M5 (Dai et al., "Very Deep Convolutional Neural Networks for Raw Waveforms", ICASSP 2017): a
1-D CNN on the raw waveform, for `octify convert examples/audio.py --input-shape 1,1,16000`.

A Conv1d of kernel 80 and stride 4, BN, ReLU, MaxPool1d(4), then three blocks of a kernel-3
Conv1d, BN, ReLU (and MaxPool1d(4) but after the last), global average pooling and a Linear
classifier. The kernel-3 convs are padded by 1 ("same"), so that a low branch one octave down
stays on the octave grid of its high branch (unpadded, each conv would take 2 samples off both).
"""
import torch
from torch import nn


def _block(cin: int, cout: int, kernel: int, stride: int = 1, pool: bool = True) -> list:
    layers = [nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0, bias=False),
              nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
    return layers + ([nn.MaxPool1d(4)] if pool else [])


def build_model(n_classes: int = 35, channels: int = 128) -> nn.Module:
    """M5 on 1 x 16000 waveforms (one second at 16 kHz); 35 classes as Speech Commands."""
    c = channels
    return nn.Sequential(
        *_block(1, c, 80, stride=4),
        *_block(c, c, 3),
        *_block(c, 2 * c, 3),
        *_block(2 * c, 4 * c, 3, pool=False),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(4 * c, n_classes),
    )


if __name__ == "__main__":
    import octify

    model = build_model().eval()
    x = torch.randn(2, 1, 16000)
    converted = octify.convert(model, example_inputs=x, alpha=0.5)
    record = octify.record_of(converted)
    print(f"{len(record.converted)} of {len(record.convs)} Conv1d layers octave; output {tuple(converted(x).shape)}")
