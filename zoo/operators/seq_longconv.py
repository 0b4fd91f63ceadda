"""Long convolutions with a regularised explicit kernel (squash + smooth).

`Simple Hardware-Efficient Long Convolutions for Sequence Modeling`
    Fu et al., ICML 2023, arXiv 2302.06646, https://github.com/HazyResearch/safari

A long convolution parameterises its kernel directly, one weight per tap and channel, as long as
the sequence. Left alone such kernels are noisy and train poorly; the paper regularises them
with two simple operations applied to the kernel on every forward pass:

- squash: soft-thresholding, `sign(k) * max(|k| - lambda, 0)`, which zeroes small taps (sparsity);
- smooth: a moving average over neighbouring taps (low frequencies).

The convolution itself is an FFT convolution (torch.fft). Layout (B, D, L).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .seq_fftconv import fft_conv
from .seq_registry import register_sequence_mixer

__all__ = ["LongConvKernel", "LongConvMixer"]


class LongConvKernel(nn.Module):
    """An explicit (D, kernel_size) kernel, squashed and smoothed when read.

    Args:
        dim: Channels.
        kernel_size: Taps.
        squash: lambda of the soft threshold.
        smooth: Width of the moving average (1: none).
    """

    def __init__(self, dim: int, kernel_size: int = 1024, squash: float = 0.003, smooth: int = 3):
        super().__init__()
        self.squash, self.smooth = squash, smooth
        self.weight = nn.Parameter(torch.randn(dim, kernel_size) * 0.02)

    def forward(self) -> torch.Tensor:
        k = torch.sign(self.weight) * F.relu(self.weight.abs() - self.squash)
        if self.smooth > 1:
            # a centred moving average; `count_include_pad=False` keeps the ends unbiased
            k = F.avg_pool1d(k.unsqueeze(1), self.smooth, stride=1, padding=self.smooth // 2,
                             count_include_pad=False).squeeze(1)  # fmt: skip
        return k


@register_sequence_mixer("longconv")
class LongConvMixer(nn.Module):
    """`out(gelu(k * x) * gate(x))` with a `LongConvKernel` k: the paper's long-conv layer in an
    H3-style gated form, causal or centred.

    Args:
        dim: Channels.
        kernel_size: Taps; a sequence longer than this sees a kernel zero beyond it.
        causal: Causal (True) or centred convolution.
        squash: lambda of the kernel's soft threshold.
        smooth: Width of the kernel's moving average.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 1024,
        causal: bool = True,
        squash: float = 0.003,
        smooth: int = 3,
    ):
        super().__init__()
        self.causal = causal
        self.kernel = LongConvKernel(dim, kernel_size, squash, smooth)
        self.skip = nn.Parameter(torch.ones(dim, 1))  # the "D" term of a state-space layer
        self.gate = nn.Conv1d(dim, dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)
        nn.init.normal_(self.gate.weight, std=1 / math.sqrt(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel()[:, : x.shape[-1]]
        y = F.gelu(fft_conv(x, kernel, self.causal) + self.skip * x)
        return self.proj_out(y * torch.sigmoid(self.gate(x)))
