"""Tunable convolution: a kernel steered at inference by a tuning parameter.

`Tunable Convolutions with Parametric Multi-Loss Optimization`
    Maggioni et al., CVPR 2023, arXiv 2304.00898

A tunable convolution holds N kernels and biases; a tuning parameter p on the simplex
(p_i >= 0, sum p_i = 1) mixes them, `W(p) = sum_i p_i W_i`, `b(p) = sum_i p_i b_i`. Trained with
N objectives weighted by the same p, each kernel specialises, and at inference p trades the
objectives off continuously (the perception-distortion trade-off, in the paper).

Layout: NCHW. `p` is `(N,)` for the whole batch or `(B, N)` per image.
"""

import math

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = ["TunableConv2d"]


@register_notrace_module  # branches on the tuning parameter's shape: a leaf for torch.fx
class TunableConv2d(nn.Module):
    """N parallel kernels mixed by the tuning parameter `p` given at call time.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel side.
        num_params: N, the number of kernels (and of objectives).
        stride, padding, dilation, groups, bias: As nn.Conv2d.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        num_params: int = 2,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.num_params, self.stride, self.dilation, self.groups = (
            num_params,
            stride,
            dilation,
            groups,
        )
        self.padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        shape = (num_params, out_channels, in_channels // groups, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(num_params, out_channels)) if bias else None
        for kernel in self.weight:  # each kernel initialised like an nn.Conv2d
            nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if p.shape[-1] != self.num_params:
            raise ValueError(
                f"tuning parameter has {p.shape[-1]} entries, expected {self.num_params}"
            )
        if p.ndim == 1:  # one kernel for the batch
            weight = torch.einsum("n,noihw->oihw", p, self.weight)
            bias = p @ self.bias if self.bias is not None else None
            return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        # per-image kernels: fold the batch into groups of one grouped convolution
        batch, channels, height, width = x.shape
        weight = torch.einsum("bn,noihw->boihw", p, self.weight).flatten(0, 1)
        bias = (p @ self.bias).flatten() if self.bias is not None else None
        y = F.conv2d(
            x.reshape(1, batch * channels, height, width),
            weight, bias, self.stride, self.padding, self.dilation, self.groups * batch,
        )  # fmt: skip
        return y.view(batch, -1, y.shape[-2], y.shape[-1])


class _TunableMixer(nn.Module):
    """Depthwise tunable conv as a token mixer, tuned with its learnable `p` (a softmax)."""

    def __init__(self, dim: int, kernel_size: int = 7, num_params: int = 2):
        super().__init__()
        self.conv = TunableConv2d(dim, dim, kernel_size, num_params, groups=dim)
        self.logits = nn.Parameter(torch.zeros(num_params))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.logits.softmax(0))


register_token_mixer("tunable")(_TunableMixer)
