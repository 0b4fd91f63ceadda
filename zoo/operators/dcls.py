"""Dilated Convolution with Learnable Spacings (DCLS).

`Dilated convolution with learnable spacings`
    Khalfaoui-Hassani, Pellegrini, Masquelier, ICLR 2023, arXiv 2112.03740,
    https://github.com/K-H-Ismail/Dilated-Convolution-with-Learnable-Spacings-PyTorch

A DCLS kernel has `kernel_count` weights, each at a learnable continuous (row, column) position
inside a larger "dilated" window. The dense window-sized kernel that the convolution uses is
built by bilinear interpolation: a weight at fractional position (y, x) is spread over the four
surrounding taps with weights (1 - ry)(1 - rx), (1 - ry)rx, ry(1 - rx), ry rx, where ry, rx are
the fractional parts. The spread is differentiable in ry and rx, so the positions learn by
gradient descent like the weights. This is the paper's (bilinear) construction, the
`version='v0'` of the authors' package that their ConvNeXt-dcls models use.

Positions are offsets from the window's centre; the paper clamps them to the window after every
optimizer step. Here the construction clamps them instead (the same kernel), so no training-loop
hook is needed; a position pushed beyond the window edge gets no gradient until it is moved back.

Why our own implementation rather than the authors' `dcls` package (PyPI `dcls` 0.1.1, which we
checked against: on the same weights and in-window positions the two kernels agree to float
rounding):
- the package allocates its parameters with `torch.Tensor(...)` and has no `device`/`dtype`
  arguments, while zoo models must build on the meta device;
- it caches its index grids on the first call and never moves them, so a module that has run on
  one device fails on another;
- its bilinear kernel compares a dense (window x window x channels x count) index grid against the
  positions; ours builds one row and one column interpolation vector per weight and contracts them
  with one einsum, O(count * (h + w)) instead of O(count * h * w) memory per channel;
- it would be one more dependency for about sixty lines of PyTorch.

Layout: NCHW in and out.
"""

import math

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module, to_2tuple
from torch import nn

from .registry import register_token_mixer

__all__ = ["DclsConv2d", "DclsPositions", "crop_to_input", "dcls_kernel"]


def _interpolation_taps(offsets: torch.Tensor, size: int) -> torch.Tensor:
    """One-dimensional linear interpolation weights of each offset over a `size`-tap axis.

    Args:
        offsets: Positions relative to the axis centre, any shape.
        size: Number of taps.

    Returns:
        `offsets.shape + (size,)`: at most two nonzero taps per position, summing to 1.
    """
    position = (offsets + (size - 1) / 2).clamp(0, size - 1)
    # keep the upper neighbour inside the window: at the last tap, lower = size - 2 and frac = 1
    lower = position.detach().floor().clamp(max=max(size - 2, 0))
    frac = (position - lower).unsqueeze(-1)
    grid = torch.arange(size, device=offsets.device, dtype=offsets.dtype)
    lower = lower.unsqueeze(-1)
    return (grid == lower) * (1 - frac) + (grid == lower + 1) * frac


def dcls_kernel(
    weight: torch.Tensor, positions: torch.Tensor, dilated_kernel_size: tuple[int, int]
) -> torch.Tensor:
    """The dense DCLS kernel: each weight spread bilinearly around its position.

    Args:
        weight: (out, in / groups, count) kernel element values.
        positions: (2, out, in / groups or 1, count) row and column offsets from the centre.
        dilated_kernel_size: (h, w) of the dense kernel.

    Returns:
        (out, in / groups, h, w) kernel; weights that land on the same tap add up.
    """
    positions = positions.expand(2, weight.shape[0], weight.shape[1], weight.shape[2])
    rows = _interpolation_taps(positions[0], dilated_kernel_size[0])
    cols = _interpolation_taps(positions[1], dilated_kernel_size[1])
    return torch.einsum("oik,oiky,oikx->oiyx", weight, rows, cols)


class DclsPositions(nn.Module):
    """Learnable kernel-element positions, (2, out, in / groups, count) offsets from the centre.

    A module of its own so that several DCLS convolutions can share one (ConvNeXt-dcls ties the
    positions of all blocks of a stage): a shared module stays shared through `.to()`,
    `.to_empty()` and deepcopy, where a Parameter assigned to several modules would not.
    """

    def __init__(
        self,
        out_chs: int,
        in_chs_per_group: int,
        kernel_count: int,
        dilated_kernel_size: int | tuple[int, int],
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.dilated_kernel_size = to_2tuple(dilated_kernel_size)
        self.offsets = nn.Parameter(
            torch.empty(2, out_chs, in_chs_per_group, kernel_count, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the paper's initialisation: N(0, 0.5) around the centre, clamped to the window
        with torch.no_grad():
            for axis, size in enumerate(self.dilated_kernel_size):
                limit = (size - 1) / 2
                nn.init.normal_(self.offsets[axis], 0.0, 0.5).clamp_(-limit, limit)


def crop_to_input(
    kernel: torch.Tensor, padding: tuple[int, int], size: tuple[int, int]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The kernel and padding of a stride-1 'same' conv less the taps that only meet padding.

    On an H-row input a tap more than H - 1 rows from the centre reads zero padding at every
    output position; dropping those rows of taps (and as much padding) leaves the output and
    every gradient unchanged. A 17x17 DCLS window on a 2x2 map keeps 3x3 of its taps.
    """
    extra_h = max(0, padding[0] - (size[0] - 1))
    extra_w = max(0, padding[1] - (size[1] - 1))
    kernel = kernel[:, :, extra_h : kernel.shape[2] - extra_h, extra_w : kernel.shape[3] - extra_w]
    return kernel, (padding[0] - extra_h, padding[1] - extra_w)


# a leaf for torch.fx: how much of the window it keeps depends on the input size
@register_notrace_module
class DclsConv2d(nn.Module):
    """A 2D convolution whose `kernel_count` kernel elements sit at learnable positions.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        kernel_count: Kernel elements per (output, input) channel pair.
        dilated_kernel_size: Size of the window the elements move in (the dense kernel's size).
        stride: Convolution stride.
        padding: Zero padding; None gives `dilated_kernel_size // 2` (same size for odd windows).
        groups: Channel groups (`groups = in_chs = out_chs` is depthwise).
        bias: Add a learnable bias.
        positions: A `DclsPositions` to share with other convolutions; None creates one.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_count: int,
        dilated_kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        bias: bool = True,
        positions: DclsPositions | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if in_chs % groups or out_chs % groups:
            raise ValueError(
                f"in_chs ({in_chs}) and out_chs ({out_chs}) must be divisible by groups ({groups})"
            )
        dd = {"device": device, "dtype": dtype}
        self.dilated_kernel_size = to_2tuple(dilated_kernel_size)
        self.stride = to_2tuple(stride)
        self.padding = to_2tuple(
            tuple(s // 2 for s in self.dilated_kernel_size) if padding is None else padding
        )
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_chs, in_chs // groups, kernel_count, **dd))
        self.bias = nn.Parameter(torch.empty(out_chs, **dd)) if bias else None
        if positions is None:
            positions = DclsPositions(
                out_chs, in_chs // groups, kernel_count, self.dilated_kernel_size, **dd
            )
        elif positions.offsets.shape[1::2] != (out_chs, kernel_count) or (
            positions.dilated_kernel_size != self.dilated_kernel_size
        ):
            raise ValueError(
                f"shared positions of shape {tuple(positions.offsets.shape)} and window "
                f"{positions.dilated_kernel_size} do not fit {out_chs} outputs x {kernel_count} "
                f"elements in a {self.dilated_kernel_size} window"
            )
        self.positions = positions
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's initialisation, with the element count as the kernel's fan-in
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def kernel(self) -> torch.Tensor:
        """The dense (out, in / groups, h, w) kernel built from the weights and positions."""
        return dcls_kernel(self.weight, self.positions.offsets, self.dilated_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, padding = self.kernel(), self.padding
        window = self.dilated_kernel_size
        same_size = (
            self.stride == (1, 1)
            and 2 * padding[0] + 1 == window[0]
            and 2 * padding[1] + 1 == window[1]
        )
        if same_size:
            # CPU backward of large depthwise kernels costs per tap, and at 32 px input most of
            # the 17x17 window lies beyond the map
            kernel, padding = crop_to_input(kernel, padding, (x.shape[-2], x.shape[-1]))
        return F.conv2d(x, kernel, self.bias, self.stride, padding, 1, self.groups)


@register_token_mixer("dcls")
def depthwise_dcls(
    dim: int,
    kernel_count: int = 34,
    dilated_kernel_size: int = 17,
    device=None,
    dtype=None,
) -> DclsConv2d:
    """Depthwise DCLS token mixer; the defaults are the paper's ConvNeXt-T setting (34 in 17x17)."""
    return DclsConv2d(
        dim,
        dim,
        kernel_count,
        dilated_kernel_size,
        groups=dim,
        device=device,
        dtype=dtype,
    )
