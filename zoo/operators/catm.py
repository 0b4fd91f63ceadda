"""Convolutional Additive Token Mixer (CATM), the token mixer of CAS-ViT.

`CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile
Applications`
    Zhang et al., arXiv 2408.03703, https://github.com/Tianfang-Zhang/CAS-ViT

Self-attention scores every pair of tokens with `softmax(Q K^T)`. CATM replaces the pairwise score
with an additive one, `Sim(Q, K) = Phi(Q) + Phi(K)`, where `Phi` is a spatial interaction (a
per-position sigmoid gate from a depthwise conv) followed by a channel interaction (a per-channel
sigmoid gate from the global average). The context `dwconv(Phi(Q) + Phi(K))` then gates `V`
element-wise, and a depthwise conv projects the result. Everything is convolutions and
element-wise products, so the cost is linear in the number of tokens, while the global average of
the channel interaction still lets every output see the whole map.

Layout: NCHW in and out.
"""

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = ["ChannelInteraction", "ConvAdditiveTokenMixer", "SpatialInteraction"]


class SpatialInteraction(nn.Module):
    """Gate every position by one sigmoid weight from a depthwise conv -> BN -> ReLU -> 1x1 conv."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.gate = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd),
            nn.BatchNorm2d(dim, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, 1, 1, bias=False, **dd),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ChannelInteraction(nn.Module):
    """Gate every channel by one sigmoid weight computed from the global average of all channels."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim, 1, bias=False, device=device, dtype=dtype),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


@register_token_mixer("catm")
class ConvAdditiveTokenMixer(nn.Module):
    """CATM: `proj(dwconv(Phi_q(Q) + Phi_k(K)) * V)`, with Q, K, V from one 1x1 convolution.

    Args:
        dim: Input and output channels.
        qkv_bias: Bias in the Q, K, V projection (the paper's models use none).
        proj_drop: Dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        qkv_bias: bool = False,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias, **dd)
        self.phi_q = nn.Sequential(SpatialInteraction(dim, **dd), ChannelInteraction(dim, **dd))
        self.phi_k = nn.Sequential(SpatialInteraction(dim, **dd), ChannelInteraction(dim, **dd))
        self.context = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=1)
        similarity = self.phi_q(q) + self.phi_k(k)  # additive: no N x N score matrix
        return self.proj_drop(self.proj(self.context(similarity) * v))
