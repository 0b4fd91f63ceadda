"""Mix-FFN: the channel MLP with a 3x3 depthwise conv between its two 1x1 convs (NCHW).

`PVT v2: Improved Baselines with Pyramid Vision Transformer`
    Wang et al., CVM 2022, arXiv 2106.13797, https://github.com/whai362/PVT

The depthwise conv gives every token its neighbours' positions, which is why PVTv2 drops the
position embedding; FaViT and SVT take this MLP as theirs.
"""

import torch
from torch import nn

__all__ = ["MixFfn"]


class MixFfn(nn.Module):
    """1x1 conv, 3x3 depthwise conv, GELU, 1x1 conv."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Conv2d(dim, hidden, 1, **dd)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))
