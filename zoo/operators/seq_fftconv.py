"""Long convolutions three ways (direct, torch.fft, Monarch matmul FFT) and the FlashFFTConv mixer.

`FlashFFTConv: Efficient Convolutions for Long Sequences with Tensor Cores`
    Fu et al., ICLR 2024, arXiv 2311.05908, https://github.com/HazyResearch/flash-fft-conv

FlashFFTConv computes the FFT of a long convolution with matrix multiplies: a Monarch
decomposition of the DFT. An N-point DFT with N = N1 * N2 is (Cooley-Tukey) an N1-point DFT
along one axis of the (N1, N2) reshaped signal, a point-wise twiddle, and an N2-point DFT along the
other axis; applied recursively with dense `radix`-point DFT matrices it costs
O(N * radix * log_radix N) multiply-adds, i.e. it grows as N log N with every step a matmul
(the paper maps those matmuls onto tensor cores and fuses them; here they are plain torch
matmuls, the algorithm without the kernel fusion).

Layout: (B, D, L) sequences, (D, K) kernels. Convolution convention, for every function here:
causal `y[t] = sum_s k[s] x[t - s]`; non-causal centres the kernel, `y[t] = sum_s k[s] x[t - s +
K // 2]`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .seq_registry import register_sequence_mixer

__all__ = ["FlashFFTConvMixer", "direct_conv", "fft_conv", "monarch_fft", "monarch_fft_conv"]


def _slice(full: torch.Tensor, length: int, kernel_size: int, causal: bool) -> torch.Tensor:
    start = 0 if causal else kernel_size // 2
    return full[..., start : start + length]


def direct_conv(x: torch.Tensor, kernel: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Depthwise convolution by `F.conv1d`: O(L * K), the reference."""
    D, K = kernel.shape
    # conv1d correlates: flip the kernel to convolve; pad K - 1 for the full output
    full = F.conv1d(x, kernel.flip(-1).unsqueeze(1).to(x.dtype), padding=K - 1, groups=D)
    return _slice(full, x.shape[-1], K, causal)


def fft_conv(x: torch.Tensor, kernel: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Depthwise convolution by torch.fft: O((L + K) log(L + K))."""
    L, K = x.shape[-1], kernel.shape[-1]
    n = L + K - 1  # no circular wrap-around
    spectrum = torch.fft.rfft(x.float(), n=n) * torch.fft.rfft(kernel.float(), n=n)
    return _slice(torch.fft.irfft(spectrum, n=n), L, K, causal).to(x.dtype)


def _dft_matrix(n: int, device: torch.device, inverse: bool = False) -> torch.Tensor:
    k = torch.arange(n, device=device, dtype=torch.float64)
    sign = 1.0 if inverse else -1.0
    return torch.polar(torch.ones(n, n, dtype=torch.float64, device=device),
                       sign * 2 * math.pi * k[:, None] * k[None] / n).to(torch.complex64)  # fmt: skip


def monarch_fft(x: torch.Tensor, radix: int = 16, inverse: bool = False) -> torch.Tensor:
    """The DFT along the last axis (length a power of two) as recursive matmuls.

    Unnormalised both ways, as torch.fft.fft and n * torch.fft.ifft.
    """
    n = x.shape[-1]
    if n <= radix:
        return x @ _dft_matrix(n, x.device, inverse).T
    n1 = radix
    n2 = n // n1
    # index n = n2_count * i1 + i2: a radix-point DFT over i1 (a matmul), then a twiddle
    blocks = x.reshape(*x.shape[:-1], n1, n2).transpose(-1, -2)  # (..., n2, n1)
    blocks = blocks @ _dft_matrix(n1, x.device, inverse).T  # (..., i2, k1)
    sign = 1.0 if inverse else -1.0
    i2 = torch.arange(n2, device=x.device, dtype=torch.float64)
    k1 = torch.arange(n1, device=x.device, dtype=torch.float64)
    twiddle = torch.polar(torch.ones(n2, n1, dtype=torch.float64, device=x.device),
                          sign * 2 * math.pi * i2[:, None] * k1[None] / n).to(torch.complex64)  # fmt: skip
    blocks = (blocks * twiddle).transpose(-1, -2)  # (..., k1, i2)
    # an n2-point DFT over i2, recursively; the output index is k = k1 + n1 * k2
    out = monarch_fft(blocks, radix, inverse)  # (..., k1, k2)
    return out.transpose(-1, -2).reshape(*x.shape[:-1], n)


def monarch_fft_conv(
    x: torch.Tensor, kernel: torch.Tensor, causal: bool = True, radix: int = 16
) -> torch.Tensor:
    """Depthwise convolution with the FFTs done by `monarch_fft` (FlashFFTConv's algorithm)."""
    L, K = x.shape[-1], kernel.shape[-1]
    n = 1 << math.ceil(math.log2(L + K - 1))  # powers of two factor into radix blocks
    xs = monarch_fft(F.pad(x.float(), (0, n - L)).to(torch.complex64), radix)
    ks = monarch_fft(F.pad(kernel.float(), (0, n - K)).to(torch.complex64), radix)
    full = monarch_fft(xs * ks, radix, inverse=True).real / n
    return _slice(full, L, K, causal).to(x.dtype)


@register_sequence_mixer("flashfftconv")
class FlashFFTConvMixer(nn.Module):
    """A gated long convolution computed by `monarch_fft_conv`: `out(gate(x) * (k * in(x)))`.

    The kernel is a learned (D, kernel_size) parameter under a fixed exponential-decay window (a
    prior toward recent inputs, as in H3/Hyena's long filters); `kernel_size` shorter than the
    sequence is the paper's *partial convolution*.

    Args:
        dim: Channels.
        kernel_size: Taps of the long kernel.
        causal: Causal (True) or centred convolution.
        radix: Size of the dense DFT blocks.
    """

    def __init__(self, dim: int, kernel_size: int = 1024, causal: bool = True, radix: int = 16):
        super().__init__()
        self.causal, self.radix = causal, radix
        self.proj_in = nn.Conv1d(dim, 2 * dim, 1)
        self.kernel = nn.Parameter(torch.randn(dim, kernel_size) / math.sqrt(kernel_size))
        decay = torch.linspace(0, 1, kernel_size)[None] * torch.linspace(1, 8, dim)[:, None]
        self.register_buffer("window", torch.exp(-decay), persistent=False)
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(x).chunk(2, 1)
        kernel = (self.kernel * self.window)[:, : x.shape[-1]]
        y = monarch_fft_conv(value, kernel, self.causal, self.radix)
        return self.proj_out(y * torch.sigmoid(gate))
