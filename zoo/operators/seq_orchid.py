"""Orchid: a data-dependent convolution whose kernel a conditioning network computes from the input.

`Orchid: Flexible and Data-Dependent Convolution for Sequence Modeling`
    Karami and Ghodsi, NeurIPS 2024, arXiv 2402.18508

Orchid's kernel is `h = h_static + h_theta(x)`: a learned kernel plus one a conditioning network
computes from the input itself. For the convolution to stay shift-equivariant the conditioning
network must be shift-invariant; the paper's designs achieve that by working on shift-invariant
views of the input. Here the data-dependent part is computed in the frequency domain from the
magnitude spectrum |FFT(x)|, which a circular shift of x leaves unchanged: a short convolution
over frequencies and a pointwise projection give a per-channel filter response that multiplies
the input's spectrum. The layer is gated as in the paper's block (an elementwise gate around the
convolution). Layout (B, D, L); the convolution is circular over the (zero-padded) sequence.
"""

import torch
from torch import nn

from .seq_registry import register_sequence_mixer

__all__ = ["OrchidMixer"]


@register_sequence_mixer("orchid")
class OrchidMixer(nn.Module):
    """`out(gate(x) * conv(v(x), h_static + h_theta(x)))`, the conv done in the frequency domain.

    Args:
        dim: Channels.
        max_length: Longest sequence; the static kernel has this many taps.
        hidden: Channels of the conditioning network.
        pad: Zero-pad to twice the length (a linear, not circular, convolution). The property the
            conditioning network is built for, shift-equivariance, holds exactly for circular
            shifts of the unpadded (`pad=False`) layer.
    """

    def __init__(self, dim: int, max_length: int = 1024, hidden: int = 32, pad: bool = True):
        super().__init__()
        self.pad = pad
        self.proj_in = nn.Conv1d(dim, 2 * dim, 1)
        self.static_kernel = nn.Parameter(torch.randn(dim, max_length) * 0.02)
        # conditioning network over frequencies: shift-invariant because it reads |FFT(x)| only
        self.condition = nn.Sequential(
            nn.Conv1d(dim, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, 2 * dim, 1),
        )
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def kernel_spectrum(self, v: torch.Tensor, n: int) -> torch.Tensor:
        """The complex frequency response, static + data-dependent, (B, D, n // 2 + 1)."""
        static = torch.fft.rfft(self.static_kernel[:, : min(n, self.static_kernel.shape[1])], n=n)
        magnitude = torch.fft.rfft(v, n=n).abs()
        magnitude = torch.log1p(magnitude)  # spectra span decades: compress before the network
        real, imag = self.condition(magnitude).chunk(2, 1)
        return static + torch.complex(real, imag)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[-1]
        v, gate = self.proj_in(x).chunk(2, 1)
        n = 2 * L if self.pad else L
        v32 = v.float()
        y = torch.fft.irfft(torch.fft.rfft(v32, n=n) * self.kernel_spectrum(v32, n), n=n)[..., :L]
        return self.proj_out(y.to(x.dtype) * torch.sigmoid(gate))
