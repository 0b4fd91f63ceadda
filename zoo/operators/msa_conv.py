"""MSA-Conv: multi-head self-attention inside the sliding window of a (generalised) convolution.

`TiC: Exploring Vision Transformer in Convolution`
    Zhang, Wang, Bian & Xiong, 2023, arXiv 2310.04134, https://github.com/zs670980918/MSA-Conv
    (code published at https://github.com/StriveZs/MSA-Conv)

Where a convolution weights the k x k (optionally dilated) neighbourhood of every pixel with a
fixed kernel, MSA-Conv weights it by attention: a 1x1 conv gives queries, keys and values; at
every pixel the query is compared with the keys of its window (zero padded at the borders, like
the convolution's input), a softmax over the window gives the weights, and the values of the
window are summed with them, per head. The result plus the input then goes through the layer's
own convolution (standard or depthwise, strided if asked), which projects to the output
channels. There is no position embedding and no global attention, so the layer takes any input
size and its cost grows linearly with the number of pixels.

`pool_kv` (TiC's inter-pooling, our reading of it) average-pools keys and values 3x3 before they
enter the window, so a k x k window summarises a (k + 2) x (k + 2) area at no parameter cost.

Layout: NCHW.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_token_mixer

__all__ = ["MSAConv2d", "msa_conv_mixer"]


class MSAConv2d(nn.Module):
    """Self-attention over each pixel's k x k window, then a k x k projection convolution.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of the projection convolution.
        kernel_size: Window (and projection kernel) side.
        stride: Stride of the projection convolution.
        dilation: Dilation of the attention window.
        num_heads: Attention heads (in_channels must divide).
        groups: Groups of the projection convolution (in_channels for depthwise).
        pool_kv: Average-pool keys and values 3x3 before the window (inter-pooling).
        bias: Bias of the projection convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        num_heads: int = 1,
        groups: int = 1,
        pool_kv: bool = False,
        bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if in_channels % num_heads:
            raise ValueError(f"in_channels {in_channels} do not split into {num_heads} heads")
        dd = {"device": device, "dtype": dtype}
        self.kernel_size, self.dilation, self.num_heads = kernel_size, dilation, num_heads
        self.scale = (in_channels // num_heads) ** -0.5
        self.pool_kv = pool_kv
        self.qkv = nn.Conv2d(in_channels, 3 * in_channels, 1, **dd)
        self.proj = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=bias,
            **dd,
        )

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, heads, C / heads, k * k, H, W): every pixel's zero-padded window."""
        batch, channels, height, width = x.shape
        pad = self.dilation * (self.kernel_size - 1) // 2
        windows = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=pad)
        return windows.view(batch, self.num_heads, channels // self.num_heads, -1, height, width)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The windowed multi-head attention alone, (B, C, H, W) -> (B, C, H, W)."""
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=1)
        if self.pool_kv:
            k = F.avg_pool2d(k, 3, stride=1, padding=1, count_include_pad=False)
            v = F.avg_pool2d(v, 3, stride=1, padding=1, count_include_pad=False)
        q = q.view(batch, self.num_heads, channels // self.num_heads, 1, height, width)
        logits = (q * self._windows(k)).sum(dim=2) * self.scale  # (B, heads, k*k, H, W)
        weights = logits.softmax(dim=2).unsqueeze(2)
        return (weights * self._windows(v)).sum(dim=3).reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(x) + x)


@register_token_mixer("msa_conv")
def msa_conv_mixer(dim: int, kernel_size: int = 3, head_dim: int = 32) -> MSAConv2d:
    """MSA-Conv from `dim` to `dim` channels with a depthwise projection, a grid token mixer."""
    return MSAConv2d(dim, dim, kernel_size, num_heads=max(dim // head_dim, 1), groups=dim)
