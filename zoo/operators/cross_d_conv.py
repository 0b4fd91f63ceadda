"""Cross-D Conv: one set of 2D kernels that also convolves 3D volumes.

`Cross-D Conv: Cross-Dimensional Transferable Knowledge Base via Fourier Shifting Operation`
    (see shared/papers; code: github.com/convergingmachine/Cross-D-Conv)

The layer stores 2D kernels W (out, in, k, k). On a 2D input it is a plain convolution with W.
On a 3D input (N, C, D, H, W) it builds a 3D kernel whose depth slices are copies of W moved in
the plane by a learned, sub-pixel shift, applied as a phase ramp in the Fourier domain
(the shift theorem: shifting by s multiplies the spectrum by exp(-2 pi i <f, s>)), and scaled by
1/k_d. So 2D training transfers to 3D and back through the same weights, and 3D training learns
only how the kernel moves through depth.

At zero shifts (the initialisation) the 3D kernel is the 2D one repeated over depth / k_d: on an
input that is constant along depth it reproduces the 2D response exactly. This module is our
reading of the paper's description (the official repository was not reachable from here).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossDConv"]


class CrossDConv(nn.Module):
    """A convolution over 2D images or 3D volumes with shared 2D kernels.

    Args:
        in_channels, out_channels, kernel_size, stride, groups, bias: As nn.Conv2d.
        depth_kernel: k_d, the kernel's extent along depth for 3D inputs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        depth_kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.kernel_size, self.depth_kernel = kernel_size, depth_kernel
        self.stride, self.groups = stride, groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # per output channel and depth slice, an in-plane (dy, dx) shift in pixels
        self.shifts = nn.Parameter(torch.zeros(out_channels, depth_kernel, 2))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def kernel3d(self) -> torch.Tensor:
        """(out, in/groups, k_d, k, k): the 2D kernels phase-shifted slice by slice."""
        k = self.kernel_size
        freqs = torch.fft.fftfreq(k, device=self.weight.device)
        spectrum = torch.fft.fft2(self.weight.float())  # (O, I, k, k)
        phase = (
            self.shifts[..., 0, None, None] * freqs[:, None]
            + self.shifts[..., 1, None, None] * freqs[None, :]
        )
        ramp = torch.exp(-2j * math.pi * phase)  # (O, k_d, k, k)
        shifted = torch.fft.ifft2(spectrum[:, :, None] * ramp[:, None]).real
        return (shifted / self.depth_kernel).to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size // 2
        if x.ndim == 4:
            return F.conv2d(x, self.weight, self.bias, self.stride, pad, groups=self.groups)
        if x.ndim == 5:
            return F.conv3d(
                x, self.kernel3d(), self.bias, (1, self.stride, self.stride),
                (self.depth_kernel // 2, pad, pad), groups=self.groups,
            )  # fmt: skip
        raise ValueError(
            f"CrossDConv takes (N, C, H, W) or (N, C, D, H, W) input, got shape {tuple(x.shape)}"
        )
