"""A hand-written CNN for `octify convert examples/custom_cnn.py`.

It has what real networks have: BN + ReLU, residual additions, a channel concatenation
(torch.cat) and a squeeze-and-excitation block (global average pooling -> 1x1 convs ->
sigmoid -> channel-wise multiply). `CustomCNN` is the one class that builds without arguments,
so octify picks it; name it explicitly with examples/custom_cnn.py:CustomCNN.

    octify convert examples/custom_cnn.py --input-shape 1,3,64,64
"""
import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SqueezeExcite(nn.Module):
    """Rescale channels by a gate computed from their global average."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, squeeze-excitation, + shortcut (a 1x1 projection when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.bn2(self.conv2(self.conv1(x))))
        return self.relu(out + self.shortcut(x))


class MixedBlock(nn.Module):
    """Two parallel branches (3x3 and a 1x1 -> 3x3) concatenated along channels, then fused by a 1x1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch_a = conv_bn_relu(channels, half, 3)
        self.branch_b = nn.Sequential(conv_bn_relu(channels, half, 1), conv_bn_relu(half, half, 3))
        self.fuse = conv_bn_relu(2 * half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1))


class CustomCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, width, 3, stride=2)
        self.stage1 = nn.Sequential(ResidualBlock(width, width), MixedBlock(width))
        self.stage2 = nn.Sequential(ResidualBlock(width, 2 * width, stride=2), MixedBlock(2 * width))
        self.stage3 = ResidualBlock(2 * width, 4 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.head(torch.flatten(self.pool(x), 1))


if __name__ == "__main__":
    net = CustomCNN().eval()
    print(net(torch.randn(1, 3, 64, 64)).shape)
