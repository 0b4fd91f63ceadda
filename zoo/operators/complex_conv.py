"""Complex-valued convolution.

`Complex Network for Complex Problems: A comparative study of CNN and Complex-valued CNN`
    (see shared/papers); the layer follows the standard construction of Trabelsi et al.,
    `Deep Complex Networks`, ICLR 2018, arXiv 1705.09792.

A complex kernel W = A + iB applied to z = x + iy is Wz = (Ax - By) + i(Bx + Ay): four real
convolutions, two real kernels, so the layer preserves the algebra of complex inputs (a phase
rotation of the input rotates the output by the same phase).

Layout: NCHW complex tensors (torch.complex64).
"""

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = ["ComplexConv2d"]


class ComplexConv2d(nn.Module):
    """nn.Conv2d's arguments; input and output are complex tensors."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding

        def conv() -> nn.Conv2d:
            return nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
            )

        self.real, self.imag = conv(), conv()
        self.bias = nn.Parameter(torch.zeros(2, out_channels)) if bias else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = z.real, z.imag
        out_real = self.real(x) - self.imag(y)
        out_imag = self.imag(x) + self.real(y)
        if self.bias is not None:
            out_real = out_real + self.bias[0].view(1, -1, 1, 1)
            out_imag = out_imag + self.bias[1].view(1, -1, 1, 1)
        return torch.complex(out_real, out_imag)


class _ComplexDepthwiseMixer(nn.Module):
    """Token mixer: channel halves as real and imaginary parts, a depthwise complex conv."""

    def __init__(self, dim: int, kernel_size: int = 7):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the complex mixer pairs channels: dim must be even, got {dim}")
        self.conv = ComplexConv2d(dim // 2, dim // 2, kernel_size, groups=dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real, imag = x.chunk(2, dim=1)
        z = self.conv(torch.complex(real.float(), imag.float()))
        return torch.cat((z.real, z.imag), dim=1).to(x.dtype)


register_token_mixer("complex_conv")(_ComplexDepthwiseMixer)
