"""A priori compressed convolution: kernels held as rank-R sums of one-way filters (CP format).

`A priori compression of convolutional neural networks for wave simulators`
    Boukraichi, Akkari, Casenave & Ryckelynck, 2023, arXiv 2304.04964

Instead of compressing a trained network, the convolution is written in a compressed tensor
format before training: the 3-way kernel of each output channel (input channels x height x
width) is a canonical polyadic (CP) sum of R outer products of one-way filters,

    W[o, i, h, w] = sum_r A[o, r, i] B[o, r, h] C[o, r, w],

and for a depthwise convolution the 2-way kernel of each channel is a sum of R outer products
`B[c, r, h] C[c, r, w]`. Only the one-way filters are trained: C_out R (C_in + k_h + k_w)
weights instead of C_out C_in k_h k_w (depthwise: C R (k_h + k_w) instead of C k_h k_w). The
forward never builds W: a 1x1 convolution projects the channels onto the R filters of every
output channel, a k_h x 1 and a 1 x k_w depthwise convolution apply the spatial filters (with
zero padding, a separable filter equals its rank-one 2D kernel, borders included), and the R
terms are summed. The per-output-channel CP layout is our reading of the paper's abstract (3-way
and 2-way kernels replaced by one-way filters); no official code is published.

Layout: NCHW.
"""

import torch
import torch.nn.functional as F
from timm.layers import to_2tuple
from torch import nn

from .registry import register_token_mixer

__all__ = ["CPConv2d"]


class CPConv2d(nn.Module):
    """A drop-in `nn.Conv2d` whose kernel is a rank-`rank` CP tensor of one-way filters.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (int or (h, w)).
        rank: Number R of rank-one terms per output channel.
        stride, padding, dilation, bias: As `nn.Conv2d` (padding is zero padding; None means
            'same' for stride 1).
        groups: 1 (3-way kernels) or `in_channels == out_channels` (depthwise, 2-way kernels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        rank: int = 4,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.depthwise = groups != 1
        if self.depthwise and not groups == in_channels == out_channels:
            raise ValueError(
                f"groups must be 1 or in_channels == out_channels (depthwise), got groups={groups} "
                f"for {in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.kernel_size = to_2tuple(kernel_size)
        self.stride, self.dilation = stride, dilation
        kh, kw = self.kernel_size
        self.padding = (
            to_2tuple(padding)
            if padding is not None
            else (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        )
        # one-way filters: channel (3-way kernels only), height and width, per output channel
        if self.depthwise:
            self.channel_factor = None
        else:
            self.channel_factor = nn.Parameter(torch.empty(out_channels, rank, in_channels, **dd))
        self.height_factor = nn.Parameter(torch.empty(out_channels, rank, kh, **dd))
        self.width_factor = nn.Parameter(torch.empty(out_channels, rank, kw, **dd))
        self.bias = nn.Parameter(torch.zeros(out_channels, **dd)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian factors whose CP kernel has nn.Conv2d's default weight variance, 1/(3 fan_in)."""
        kh, kw = self.kernel_size
        fan_in = (1 if self.depthwise else self.in_channels) * kh * kw
        factors = [
            f for f in (self.channel_factor, self.height_factor, self.width_factor) if f is not None
        ]
        # var(W) = R prod(var(factor)) for independent zero-mean factors
        std = (1 / (3 * fan_in * self.rank)) ** (1 / (2 * len(factors)))
        for factor in factors:
            nn.init.normal_(factor, std=std)

    def kernel(self) -> torch.Tensor:
        """The dense kernel the factors represent, shaped like `nn.Conv2d.weight`."""
        if self.channel_factor is None:
            return torch.einsum("orh,orw->ohw", self.height_factor, self.width_factor).unsqueeze(1)
        return torch.einsum(
            "ori,orh,orw->oihw", self.channel_factor, self.height_factor, self.width_factor
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = self.out_channels * self.rank
        if self.channel_factor is None:
            # every channel feeds its own R terms
            vertical_groups = self.in_channels
        else:
            x = F.conv2d(x, self.channel_factor.reshape(terms, self.in_channels, 1, 1))
            vertical_groups = terms
        (pad_h, pad_w), (kh, kw) = self.padding, self.kernel_size
        x = F.conv2d(
            x,
            self.height_factor.reshape(terms, 1, kh, 1),
            stride=(self.stride, 1),
            padding=(pad_h, 0),
            dilation=(self.dilation, 1),
            groups=vertical_groups,
        )
        x = F.conv2d(
            x,
            self.width_factor.reshape(terms, 1, 1, kw),
            stride=(1, self.stride),
            padding=(0, pad_w),
            dilation=(1, self.dilation),
            groups=terms,
        )
        x = x.unflatten(1, (self.out_channels, self.rank)).sum(dim=2)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return x

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"rank={self.rank}, stride={self.stride}, padding={self.padding}, "
            f"depthwise={self.depthwise}"
        )


@register_token_mixer("cp_conv")
def cp_conv_mixer(dim: int, kernel_size: int = 7, rank: int = 2) -> CPConv2d:
    """Depthwise CP convolution (2-way kernels of rank `rank`), a token mixer for the grid."""
    return CPConv2d(dim, dim, kernel_size, rank=rank, groups=dim)
