"""Structured global convolution (SGConv): a long kernel from a few short sub-kernels.

`What Makes Convolutional Models Great on Long Sequence Modeling?`
    Li et al., ICLR 2023, arXiv 2210.09298, https://github.com/ctlllll/SGConv

The paper names two principles of a good global kernel: its parameter count grows sub-linearly
with the sequence length, and its weights decay with distance. SGConv builds the kernel as the
concatenation of `num_scales` sub-kernels of `scale_dim` parameters each; sub-kernel i covers
`scale_dim * 2**max(i - 1, 0)` taps (it is upsampled by interpolation) and is multiplied by
`decay**i`. The parameters are O(num_scales * scale_dim), the length O(scale_dim * 2**num_scales).
The kernel is normalised once per forward and applied as an FFT convolution. Layout (B, D, L).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .seq_fftconv import fft_conv
from .seq_registry import register_sequence_mixer

__all__ = ["SGConvKernel", "SGConvMixer"]


class SGConvKernel(nn.Module):
    """The multi-scale decaying kernel, (D, length) for the length asked.

    Args:
        dim: Channels.
        scale_dim: Parameters per sub-kernel.
        num_scales: Sub-kernels (enough to cover `max_length` when None).
        decay: Weight of sub-kernel i is decay**i (the paper uses 1/2).
        max_length: Used only to pick `num_scales` when it is None.
    """

    def __init__(
        self,
        dim: int,
        scale_dim: int = 16,
        num_scales: int | None = None,
        decay: float = 0.5,
        max_length: int = 1024,
    ):
        super().__init__()
        if num_scales is None:
            num_scales = 1 + max(1, math.ceil(math.log2(max_length / scale_dim)))
        self.decay = decay
        self.sub_kernels = nn.ParameterList(
            nn.Parameter(torch.randn(dim, scale_dim) / math.sqrt(scale_dim))
            for _ in range(num_scales)
        )

    def lengths(self) -> list[int]:
        d = self.sub_kernels[0].shape[1]
        return [d * 2 ** max(i - 1, 0) for i in range(len(self.sub_kernels))]

    def forward(self, length: int) -> torch.Tensor:
        parts = []
        for i, (weight, size) in enumerate(zip(self.sub_kernels, self.lengths())):
            if sum(p.shape[1] for p in parts) >= length:
                break  # taps past the sequence cannot act on it
            upsampled = F.interpolate(
                weight.unsqueeze(0), size=size, mode="linear", align_corners=False
            )
            parts.append(upsampled.squeeze(0) * self.decay**i)
        kernel = torch.cat(parts, -1)[:, :length]
        # normalising by the norm keeps the output scale independent of the number of scales
        return kernel / (kernel.norm(dim=-1, keepdim=True) + 1e-6)


@register_sequence_mixer("sgconv")
class SGConvMixer(nn.Module):
    """`out(gelu(k * x + skip * x))` with an `SGConvKernel` k, causal or centred.

    Args:
        dim: Channels.
        scale_dim: Parameters per sub-kernel.
        num_scales: Sub-kernels (None: enough for `max_length`).
        decay: Decay between scales.
        max_length: Longest sequence the kernel covers.
        causal: Causal (True) or centred convolution.
    """

    def __init__(
        self,
        dim: int,
        scale_dim: int = 16,
        num_scales: int | None = None,
        decay: float = 0.5,
        max_length: int = 1024,
        causal: bool = True,
    ):
        super().__init__()
        self.causal = causal
        self.kernel = SGConvKernel(dim, scale_dim, num_scales, decay, max_length)
        self.skip = nn.Parameter(torch.ones(dim, 1))
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = fft_conv(x, self.kernel(x.shape[-1]), self.causal) + self.skip * x
        return self.proj_out(F.gelu(y))
