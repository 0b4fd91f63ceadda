"""FFNified attention, FFNet's token mixer, and its re-parameterizable depthwise convolution.

`MetaMixer Is All You Need` (published as `FFNet: MetaMixer-based Efficient Convolutional Mixer
Design`)
    Yun, Lee and Ro, arXiv 2406.02021, https://github.com/ysj9909/FFNet

An FFN is a key-value memory over channels: the input is the query, the first projection holds
the keys, the activation replaces the softmax, the second projection holds the values.
FFNification keeps this query-key-value form for token mixing but moves it to space: after a
1x1 conv (+BN) makes the query, a large-kernel depthwise conv matches it against learned spatial
patterns (the keys), GELU turns the matches into coefficients, and a second depthwise conv (the
values) spreads them back over the neighbourhood. It is the ConvNeXt block with the roles of its
spatial and channel sub-operations swapped.

Large (7x7) depthwise convs carry a parallel 3x3 branch while training, each with BatchNorm, and
every conv + BN pair has a `fuse()` that folds it into one conv for inference (RepVGG style), as in
the official code; `timm.utils.reparameterize_model` applies them all.

Layout: NCHW in and out.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_token_mixer

__all__ = ["ConvBn", "FFNifiedAttention", "RepDwConv", "depthwise_conv"]

# the kernel size that gets a parallel small branch, as in the official code
LARGE_KERNEL = 7


class ConvBn(nn.Module):
    """A conv without bias then BatchNorm; `fuse()` folds them into one biased conv."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False, **dd
        )
        self.bn = nn.BatchNorm2d(out_chs, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The conv equal to this module in eval mode."""
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        conv = self.conv
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(self.bn.bias - self.bn.running_mean * scale)
        return fused


class RepDwConv(nn.Module):
    """A depthwise k x k conv + BN in parallel with a (k // 2) x (k // 2) one, summed.

    `fuse()` returns the single k x k conv of the same function (eval mode). `out_chs` may be a
    multiple of `in_chs` (each input channel feeds `out_chs / in_chs` outputs), as in FFNet's
    downsampling layers.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = LARGE_KERNEL,
        stride: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = ConvBn(in_chs, out_chs, kernel_size, stride, groups=in_chs, **dd)
        self.conv_small = ConvBn(in_chs, out_chs, kernel_size // 2, stride, groups=in_chs, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv_small(x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The one conv equal to both branches in eval mode (the small kernel zero-padded)."""
        fused = self.conv.fuse()
        small = self.conv_small.fuse()
        pad = (fused.kernel_size[0] - small.kernel_size[0]) // 2
        fused.weight.add_(F.pad(small.weight, [pad] * 4))
        fused.bias.add_(small.bias)
        return fused


def depthwise_conv(dim: int, kernel_size: int, device=None, dtype=None) -> nn.Module:
    """FFNet's depthwise conv: re-parameterizable when large, a plain biased conv otherwise."""
    if kernel_size == LARGE_KERNEL:
        return RepDwConv(dim, dim, kernel_size, device=device, dtype=dtype)
    return nn.Conv2d(
        dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, device=device, dtype=dtype
    )


@register_token_mixer("ffnified")
class FFNifiedAttention(nn.Module):
    """Query (1x1 conv + BN) -> keys (depthwise conv) -> GELU -> values (depthwise conv).

    Args:
        dim: Channels in and out.
        key_kernel: Kernel size of the key depthwise conv (7 in FFNet's last two stages).
        value_kernel: Kernel size of the value depthwise conv.
    """

    def __init__(
        self,
        dim: int,
        key_kernel: int = LARGE_KERNEL,
        value_kernel: int = LARGE_KERNEL,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.query = ConvBn(dim, dim, 1, **dd)
        self.key = depthwise_conv(dim, key_kernel, **dd)
        self.act = nn.GELU()
        self.value = depthwise_conv(dim, value_kernel, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(self.act(self.key(self.query(x))))
