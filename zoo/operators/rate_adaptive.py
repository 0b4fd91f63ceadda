"""PEPSI++'s rate-adaptive dilated convolution: one kernel, many dilation rates.

`PEPSI++: Fast and Lightweight Network for Image Inpainting`
    Shin et al., IEEE TNNLS 2021, arXiv 1905.09010

Diet-PEPSI widens the receptive field with a stack of dilated convolutions (rates 2, 4, 8, 16)
but keeps the parameters of one: all rates share the kernel W, and each rate d adapts it with
its own per-output-channel scale and shift, W_d = gamma_d * W + beta_d, so the features still
depend on the rate. Extra parameters: 2 x out_channels per rate.

Layout: NCHW.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_token_mixer

__all__ = ["RateAdaptiveDilatedConv"]


class RateAdaptiveDilatedConv(nn.Module):
    """A shared kernel applied at `rates`, adapted per rate.

    Args:
        in_channels, out_channels, kernel_size, groups, bias: As nn.Conv2d.
        rates: The dilation rates that share the kernel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        rates: tuple[int, ...] = (2, 4, 8, 16),
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.rates, self.groups, self.kernel_size = tuple(rates), groups, kernel_size
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.gamma = nn.Parameter(torch.ones(len(rates), out_channels))
        self.beta = nn.Parameter(torch.zeros(len(rates), out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def kernel_for(self, index: int) -> torch.Tensor:
        """W_d = gamma_d * W + beta_d for the `index`-th rate."""
        return self.gamma[index].view(-1, 1, 1, 1) * self.weight + self.beta[index].view(
            -1, 1, 1, 1
        )

    def forward(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The convolution at dilation `rates[index]` ('same' padding)."""
        rate = self.rates[index]
        padding = rate * (self.kernel_size - 1) // 2
        return F.conv2d(
            x, self.kernel_for(index), self.bias, padding=padding, dilation=rate, groups=self.groups
        )


@register_token_mixer("rate_adaptive")
class RateAdaptiveDilatedStack(nn.Module):
    """Token mixer: the depthwise shared kernel at every rate in turn, with ELU in between."""

    def __init__(self, dim: int, rates: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.conv = RateAdaptiveDilatedConv(dim, dim, rates=rates, groups=dim)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(len(self.conv.rates)):
            x = self.act(self.conv(x, index))
        return x
