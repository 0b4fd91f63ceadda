"""GLMix: convolution on the pixel grid, self-attention on a few soft-clustered semantic slots.

`Revisiting the Integration of Convolution and Attention for Vision Backbone`
    Zhu et al., NeurIPS 2024, arXiv 2411.14429, https://github.com/rayleizhu/GLMix

One layer holds two views of the image. On the fine grid a light convolution branch (1x1,
k x k depthwise, 1x1) extracts local features. For the global view the pixels are softly
clustered into S slots (64 by default, initialised by adaptive average pooling to 8x8): the
affinity of every slot to every pixel is a scaled cosine similarity, a softmax over pixels makes
each slot a weighted mean of pixels, multi-head self-attention relates the S slots, and a softmax
over slots of the same affinities dispatches the slots back to the pixels. Attention therefore
costs O(S^2) and the clustering O(S HW), instead of O((HW)^2).

Layout: NCHW in and out.
"""

import math

import torch
import torch.nn.functional as F
from timm.layers.attention import Attention
from torch import nn

from .registry import register_token_mixer

__all__ = ["GLMix"]


@register_token_mixer("glmix")
class GLMix(nn.Module):
    """GLMix token mixer: local depthwise-conv branch plus global attention on soft slots.

    Args:
        dim: Channels in and out.
        head_dim: Channels per attention head (heads = dim / head_dim, at least one).
        num_slots: Number of semantic slots; a square, since they start as an adaptive pool.
        kernel_size: Kernel of the depthwise conv of the local branch.
    """

    def __init__(
        self,
        dim: int,
        head_dim: int = 32,
        num_slots: int = 64,
        kernel_size: int = 5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.pool_size = math.isqrt(num_slots)
        if self.pool_size**2 != num_slots:
            raise ValueError(f"num_slots must be a square (slots start as a pool), got {num_slots}")
        num_heads = max(dim // head_dim, 1)
        if dim % num_heads:
            raise ValueError(f"dim {dim} does not split into {num_heads} heads")
        # temperature of the slot-pixel cosine affinities, learnable
        self.slot_scale = nn.Parameter(torch.full((), dim**-0.5, **dd))
        self.attn = Attention(dim, num_heads, qkv_bias=True, **dd)
        self.local = nn.Sequential(
            nn.Conv2d(dim, dim, 1, **dd),
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, **dd),
            nn.Conv2d(dim, dim, 1, **dd),
        )

    def init_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Initial slots (B, S, C): the map average-pooled to sqrt(S) x sqrt(S)."""
        return F.adaptive_avg_pool2d(x, self.pool_size).flatten(2).transpose(1, 2)

    def affinity(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarity (B, S, HW) of every slot to every pixel."""
        pixels = F.normalize(x.flatten(2), dim=1)
        return self.slot_scale * (F.normalize(slots, dim=-1) @ pixels)

    def forward(self, x: torch.Tensor, init_slots: torch.Tensor | None = None) -> torch.Tensor:
        """Mix `x`; `init_slots` (B, S, C) default to the pooled `x` (GLNet pools the block input)."""
        if init_slots is None:
            init_slots = self.init_slots(x)
        logits = self.affinity(x, init_slots)
        pixels = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        slots = logits.softmax(dim=-1) @ pixels  # soft clustering: slots are means of pixels
        slots = self.attn(slots)
        dispatched = logits.transpose(1, 2).softmax(dim=-1) @ slots  # each pixel: mean of slots
        return dispatched.transpose(1, 2).reshape(x.shape) + self.local(x)
