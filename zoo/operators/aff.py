"""Adaptive Frequency Filtering (AFF), a global token mixer in the Fourier domain.

`Adaptive Frequency Filters As Efficient Global Token Mixers`
    Huang et al., ICCV 2023, arXiv 2307.14008,
    https://github.com/microsoft/TokenMixers (folder `Adaptive Frequency Filters`)

AFF takes the 2D FFT of the features, multiplies the spectrum element-wise by a mask that a small
network computes from the spectrum itself (a semantic-adaptive frequency filter), and transforms
back. By the convolution theorem this is a circular convolution of every channel with a dynamic
kernel as large as the feature map (the inverse FFT of the mask), for O(N log N) cost.

The mask network is two block-diagonal complex linear layers over the channels (eight groups),
applied at every frequency, with the activation on the real and imaginary parts and a soft
shrinkage that zeroes small mask entries, as in the official code. The filtered map is added to
the input, also as there.

Layout: NCHW in and out.
"""

import torch
import torch.nn.functional as F
from timm.models import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = ["AdaptiveFrequencyFilter", "ComplexGroupedLinear"]


class ComplexGroupedLinear(nn.Module):
    """A complex linear map over channels with a block-diagonal weight, at every position.

    It is a grouped 1x1 convolution with complex weight `W = A + iB` and bias, written on real
    and imaginary parts: `(A x - B y + b_re) + i (B x + A y + b_im)` for the input `x + iy`.
    """

    def __init__(self, dim: int, groups: int = 8, device=None, dtype=None):
        super().__init__()
        if dim % groups:
            raise ValueError(f"AFF needs channels divisible by {groups} groups, got {dim}")
        self.groups = groups
        # (real, imaginary) x grouped 1x1 conv weight
        self.weight = nn.Parameter(
            torch.empty(2, dim, dim // groups, 1, 1, device=device, dtype=dtype)
        )
        self.bias = nn.Parameter(torch.empty(2, dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)  # the official scale, for weights and biases
        nn.init.normal_(self.bias, std=0.02)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_re, w_im = self.weight[0].to(real.dtype), self.weight[1].to(real.dtype)
        b_re, b_im = self.bias[0].to(real.dtype), self.bias[1].to(real.dtype)
        out_re = F.conv2d(real, w_re, b_re, groups=self.groups) - F.conv2d(
            imag, w_im, groups=self.groups
        )
        out_im = F.conv2d(imag, w_re, b_im, groups=self.groups) + F.conv2d(
            real, w_im, groups=self.groups
        )
        return out_re, out_im


# a leaf for torch.fx: the FFT runs in float32 at least, chosen from the input dtype
@register_notrace_module
@register_token_mixer("aff")
class AdaptiveFrequencyFilter(nn.Module):
    """AFF token mixer: `x + iFFT(FFT(x) * mask(FFT(x)))`, per channel and per sample.

    Args:
        dim: Input and output channels.
        groups: Blocks of the block-diagonal mask network.
        sparsity_threshold: Soft-shrinkage threshold on the mask's real and imaginary parts.
        act_layer: Activation inside the mask network (the network's activation, SiLU in AFFNet).
    """

    def __init__(
        self,
        dim: int,
        groups: int = 8,
        sparsity_threshold: float = 0.01,
        act_layer: type[nn.Module] = nn.SiLU,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.sparsity_threshold = sparsity_threshold
        self.fc1 = ComplexGroupedLinear(dim, groups, **dd)
        self.act = act_layer()
        self.fc2 = ComplexGroupedLinear(dim, groups, **dd)

    def frequency_mask(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The complex filter, one value per channel and frequency, computed from `spectrum`."""
        real, imag = self.fc1(spectrum.real, spectrum.imag)
        real, imag = self.fc2(self.act(real), self.act(imag))
        shrink = self.sparsity_threshold
        return torch.complex(F.softshrink(real, shrink), F.softshrink(imag, shrink))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        # half-precision FFTs are restricted to power-of-two sizes: filter in float32 at least
        work = x.float() if x.dtype == torch.float16 or x.dtype == torch.bfloat16 else x
        spectrum = torch.fft.rfft2(work, norm="ortho")
        filtered = torch.fft.irfft2(
            spectrum * self.frequency_mask(spectrum), s=(height, width), norm="ortho"
        )
        return x + filtered.to(x.dtype)
