"""Histoformer's dynamic-range convolution.

`Restoring Images in Adverse Weather Conditions via Histogram Transformer`
    Sun et al., ECCV 2024, arXiv 2407.10172, https://github.com/sunshangquan/Histoformer

Weather degradations (rain streaks, haze, snow) share intensities rather than neighbourhoods.
Before its convolutions, the dynamic-range convolution sorts half of the channels by value,
first along the height and then along the width, so that a small kernel aggregates pixels of
similar intensity instead of adjacent ones; the other half keeps the spatial layout. After the
convolutions, the sorted half is scattered back to its pixels' original positions.

Layout: NCHW; the convolutions are a 1x1 projection and a 3x3 depthwise conv, as in the paper.
"""

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = ["DynamicRangeConv"]


@register_token_mixer("dynamic_range")
class DynamicRangeConv(nn.Module):
    """1x1 conv + depthwise conv over features whose first half is sorted by value."""

    def __init__(self, dim: int, kernel_size: int = 3, bias: bool = False):
        super().__init__()
        self.sorted_chs = dim // 2
        self.pw = nn.Conv2d(dim, dim, 1, bias=bias)
        self.dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.sorted_chs
        by_height, order_h = x[:, :half].sort(dim=-2)
        by_range, order_w = by_height.sort(dim=-1)
        y = self.dw(self.pw(torch.cat((by_range, x[:, half:]), dim=1)))
        # undo the sorts in reverse order: the width sort, then the height sort
        restored = torch.empty_like(y[:, :half]).scatter_(-1, order_w, y[:, :half])
        restored = torch.empty_like(restored).scatter_(-2, order_h, restored)
        return torch.cat((restored, y[:, half:]), dim=1)
