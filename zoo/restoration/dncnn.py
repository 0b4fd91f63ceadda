"""DnCNN: a plain 17-layer convolutional network that predicts the noise (residual learning).

`Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising`
    Zhang et al., IEEE TIP 2017, arXiv 1608.03981, https://github.com/cszn/DnCNN

Conv + ReLU, then depth - 2 times Conv + BatchNorm + ReLU, then Conv: 64 channels, 3x3 kernels;
the network outputs the residual v = y - x and the clean estimate is y - v. DnCNN-S (known noise
level) has depth 17, DnCNN-B (blind) depth 20. The convolutions followed by batch norm carry no
bias (the norm's shift replaces it). Grey-scale DnCNN-S has 556,097 parameters (the paper's 556K).

For super-resolution the network runs on the bicubic upscale of the low-resolution image (as
DnCNN-3 does for single-image super-resolution).

Initialisation: the middle convolutions start as identity (Dirac) kernels and the last
convolution at zero, so the untrained network returns its input (it predicts no noise) and
every middle layer passes the first layer's features through. The paper trains 50 epochs of
batch 128 from He-style random weights; on a CPU budget of a few hundred steps that start
leaves DnCNN on the trivial "output the noisy input" solution for 600+ steps, while the identity
start gains 7 dB within 100 steps (docs/benchmarks.md). Architecture and parameter count are the
paper's.

`conv="weighted"` swaps every 3x3 convolution for the weighted convolution of
zoo/operators/weighted_conv.py (`Optimal Weighted Convolution for Classification and Denosing`,
which evaluates it in DnCNN): same parameters, a fixed spatial density on the kernel.
"""

from contextlib import nullcontext
from typing import Literal

import torch
from torch import nn

from zoo.operators.weighted_conv import WeightedConv2d

from .pixels import bicubic_resize

__all__ = ["DnCNN"]

ConvKind = Literal["plain", "weighted"]


def conv3x3_layer(kind: ConvKind) -> type[nn.Module]:
    """The 3x3 convolution class for `kind`: nn.Conv2d, or the zoo's weighted convolution."""
    match kind:
        case "plain":
            return nn.Conv2d
        case "weighted":
            return WeightedConv2d
        case other:
            raise ValueError(f"conv must be 'plain' or 'weighted', got {other!r}")


class DnCNN(nn.Module):
    """Residual-learning denoiser.

    Args:
        in_chans: Image channels (1: grey-scale DnCNN, 3: colour CDnCNN).
        scale: Upscaling factor; above 1 the input is first bicubic-upscaled.
        depth: Convolution layers (17: DnCNN-S, 20: DnCNN-B).
        width: Feature channels.
        conv: 3x3 convolution: `plain` or `weighted` (Optimal Weighted Convolution).
        device: Where to build the parameters (`meta` for a shape-only model).
        dtype: Parameter dtype.
    """

    restoration_net = True

    def __init__(
        self,
        in_chans: int = 1,
        scale: int = 1,
        depth: int = 17,
        width: int = 64,
        conv: ConvKind = "plain",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_chans, self.scale = in_chans, scale
        conv_layer = conv3x3_layer(conv)
        with torch.device(device) if device is not None else nullcontext():
            layers: list[nn.Module] = [conv_layer(in_chans, width, 3, padding=1), nn.ReLU()]
            for _ in range(depth - 2):
                layers += [
                    conv_layer(width, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
            layers.append(conv_layer(width, in_chans, 3, padding=1))
            self.body = nn.Sequential(*layers)
        self.init_weights()
        if dtype is not None:
            self.to(dtype)

    def init_weights(self) -> None:
        """Identity middle convolutions, a zero last one (see the module docstring)."""
        for module in self.body[2:-1]:
            if isinstance(module, nn.Conv2d):
                nn.init.dirac_(module.weight)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale > 1:
            x = bicubic_resize(x, float(self.scale))
        return x - self.body(x)
