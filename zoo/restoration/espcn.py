"""ESPCN: three convolutions in low-resolution space, then a sub-pixel convolution layer.

`Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
Neural Network`
    Shi et al., CVPR 2016, arXiv 1609.05158 (no official code release)

Section 3 of the paper: l = 3 layers, (f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3, tanh after
the first two, and a last convolution to r^2 * C channels that a periodic shuffle (PixelShuffle)
rearranges into the r-times larger image. The paper super-resolves the luminance channel (C = 1).
The paper has no parameter table; its layer specification fixes the count, for C = 1:
    x2: 21,284   x3: 22,729   x4: 24,752   (weights and biases)
"""

from contextlib import nullcontext

import torch
from torch import nn

__all__ = ["ESPCN"]


class ESPCN(nn.Module):
    """Efficient sub-pixel convolutional network.

    Args:
        in_chans: Image channels (1 in the paper: the Y channel; 3 for RGB).
        scale: Upscaling factor r.
        widths: Feature maps of the two hidden layers (n1, n2).
        kernel_sizes: Kernel sides of the three layers (f1, f2, f3).
        device: Where to build the parameters (`meta` for a shape-only model).
        dtype: Parameter dtype.
    """

    restoration_net = True

    def __init__(
        self,
        in_chans: int = 1,
        scale: int = 3,
        widths: tuple[int, int] = (64, 32),
        kernel_sizes: tuple[int, int, int] = (5, 3, 3),
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_chans, self.scale = in_chans, scale
        f1, f2, f3 = kernel_sizes
        n1, n2 = widths
        with torch.device(device) if device is not None else nullcontext():
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, n1, f1, padding=f1 // 2),
                nn.Tanh(),
                nn.Conv2d(n1, n2, f2, padding=f2 // 2),
                nn.Tanh(),
            )
            self.subpixel = nn.Conv2d(n2, in_chans * scale**2, f3, padding=f3 // 2)
        self.shuffle = nn.PixelShuffle(scale)
        if dtype is not None:
            self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.subpixel(self.features(x)))
