"""UniFormer's local relation aggregator and dynamic position embedding (NCHW).

`UniFormer: Unifying Convolution and Self-attention for Visual Recognition`
    Li et al., TPAMI 2023, arXiv 2201.09450, https://github.com/Sense-X/UniFormer

UniFormer writes convolution and self-attention as one multi-head relation aggregator (MHRA):
a value projection, a token affinity, an output projection. In the shallow stages the affinity is
local and learnable but input-independent, i.e. a depthwise convolution over a 5x5 neighbourhood
(local MHRA); in the deep stages it is self-attention (global MHRA). The dynamic position
embedding (DPE) is a residual 3x3 depthwise convolution before each block. Our own
implementation of the official layers (MIT license).
"""

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = ["DynamicPositionEmbedding", "LocalMHRA"]


@register_token_mixer("uniformer_local")
class LocalMHRA(nn.Module):
    """Local MHRA: 1x1 value projection, k x k depthwise affinity, 1x1 output projection.

    Args:
        dim: Input and output channels.
        kernel_size: Side of the neighbourhood each token aggregates (5 in the paper).
    """

    def __init__(self, dim: int, kernel_size: int = 5, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv2d(dim, dim, 1, **dd)
        self.attn = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, **dd)
        self.conv2 = nn.Conv2d(dim, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.attn(self.conv1(x)))


class DynamicPositionEmbedding(nn.Module):
    """x + depthwise_conv3x3(x): a position encoding that follows the input size (DPE)."""

    def __init__(self, dim: int, kernel_size: int = 3, device=None, dtype=None):
        super().__init__()
        self.proj = nn.Conv2d(
            dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x)
