"""DiCo's conv module and its compact channel attention.

`DiCo: Revitalizing ConvNets for Scalable and Efficient Diffusion Modeling`
    Ai et al., NeurIPS 2025, arXiv 2505.11196, https://github.com/shallowdream204/DiCo

Plain convolutions in a diffusion ConvNet leave many channels redundant; DiCo's compact channel
attention (CCA) re-weights channels with one gate per channel computed from the global average
(pool -> 1x1 conv over all C channels -> sigmoid). Unlike squeeze-excitation it has no bottleneck
and no second layer, hence "compact". The conv module it sits in is
1x1 conv -> 3x3 depthwise conv -> GELU -> CCA -> 1x1 conv.

Layout: NCHW.
"""

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = ["CompactChannelAttention", "DiCoConvModule"]


class CompactChannelAttention(nn.Module):
    """x * sigmoid(W avgpool(x) + b), one gate per channel."""

    def __init__(self, dim: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x)).sigmoid()


@register_token_mixer("dico")
class DiCoConvModule(nn.Module):
    """DiCo's spatial mixing module, a token mixer for the grid."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.pw_in = nn.Conv2d(dim, dim, 1)
        self.dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.act = nn.GELU()
        self.cca = CompactChannelAttention(dim)
        self.pw_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw_out(self.cca(self.act(self.dw(self.pw_in(x)))))
