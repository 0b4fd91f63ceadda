"""Weighted convolution: kernel taps scaled by a fixed spatial density function.

`Optimal Weighted Convolution for Classification and Denosing`
    Cammarasana and Patanè, 2025, arXiv 2505.24558,
    https://github.com/cammarasana123/weightedConvolution2.0

A standard convolution treats every tap of its k x k neighbourhood alike. The weighted
convolution multiplies the kernel, tap by tap, with a density Phi that depends only on the tap's
offset from the centre: a 1-D profile alpha = (d_1, ..., d_m, 1, d_m, ..., d_1) (m = k // 2, the
centre weighted 1, symmetric about it) gives the separable Phi = alpha alpha^T. The density is
fixed (pre-computed once, not trained), so the layer has exactly nn.Conv2d's parameters and runs
as one ordinary convolution with the kernel W * Phi.

The density values `d` are hyper-parameters the paper tunes per network. The defaults here are
the values the official repository's README gives as its usage examples for each kernel size.

Layout: NCHW.
"""

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = [
    "DEFAULT_DENSITIES",
    "WeightedConv2d",
    "convert_to_weighted_conv",
    "density_profile",
    "weighted_conv2d_from",
]

# density values d_1..d_m (outermost first) per odd kernel size, from the official README
DEFAULT_DENSITIES: dict[int, tuple[float, ...]] = {
    1: (),
    3: (0.7,),
    5: (0.2, 0.8),
    7: (0.25, 0.15, 0.55),
}


def density_profile(density: Sequence[float]) -> torch.Tensor:
    """The symmetric 1-D profile (d_1, ..., d_m, 1, d_m, ..., d_1), float64 on the CPU."""
    half = torch.tensor(list(density), dtype=torch.float64)
    return torch.cat((half, torch.ones(1, dtype=torch.float64), half.flip(0)))


def _resolve_density(kernel_size: tuple[int, int], density: Sequence[float] | None):
    if kernel_size[0] != kernel_size[1] or kernel_size[0] % 2 == 0:
        raise ValueError(
            f"the weighted convolution needs a square, odd kernel, got kernel_size={kernel_size}"
        )
    size = kernel_size[0]
    if density is None:
        if size not in DEFAULT_DENSITIES:
            raise ValueError(
                f"no default density for kernel_size={size}; pass density= with {size // 2} values"
            )
        density = DEFAULT_DENSITIES[size]
    density = tuple(float(d) for d in density)
    if len(density) != size // 2:
        raise ValueError(
            f"density needs kernel_size // 2 = {size // 2} values for kernel_size={size}, "
            f"got {density}"
        )
    return density


class WeightedConv2d(nn.Conv2d):
    """nn.Conv2d whose kernel is multiplied by a fixed separable density Phi = alpha alpha^T.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: As nn.Conv2d (the kernel must be square with an odd size).
        density: d_1..d_m, the profile from the outermost tap inwards (m = kernel_size // 2);
            None takes `DEFAULT_DENSITIES[kernel_size]`. All ones gives nn.Conv2d.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        density: Sequence[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.density = _resolve_density(self.kernel_size, density)
        # derived from `density`, so not saved; rebuilt by init_non_persistent_buffers()
        self.register_buffer(
            "density_map", torch.empty(self.kernel_size, device=device, dtype=dtype), False
        )
        self.init_non_persistent_buffers()

    def init_non_persistent_buffers(self) -> None:
        """(Re)compute Phi = alpha alpha^T, e.g. after building on the meta device."""
        profile = density_profile(self.density)
        phi = torch.outer(profile, profile)
        with torch.no_grad():
            self.density_map.copy_(phi.to(self.density_map.device, self.density_map.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, density={self.density}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.density_map, self.bias)


def weighted_conv2d_from(conv: nn.Conv2d, density: Sequence[float] | None = None) -> WeightedConv2d:
    """A WeightedConv2d with `conv`'s configuration that shares `conv`'s parameters.

    The parameters are the same objects (no copy, no data read), so this also works on the meta
    device and keeps any optimizer state keyed on them.
    """
    weighted = WeightedConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        density=density,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    weighted.weight = conv.weight
    weighted.bias = conv.bias
    return weighted


def convert_to_weighted_conv(
    module: nn.Module, densities: dict[int, Sequence[float]] | None = None
) -> nn.Module:
    """Replace, in place, every nn.Conv2d with a square odd kernel > 1 by a WeightedConv2d.

    1x1 and even or non-square kernels are left alone (the density of a 1x1 kernel is 1).

    Args:
        module: The network (or a single nn.Conv2d, which is returned converted).
        densities: Density values per kernel size; sizes not given use `DEFAULT_DENSITIES`.

    Returns:
        `module`, converted (a new module only when `module` itself is a convertible conv).
    """
    densities = {**DEFAULT_DENSITIES, **(densities or {})}

    def convertible(m: nn.Module) -> bool:
        if type(m) is not nn.Conv2d:  # subclasses (this one included) keep their own forward
            return False
        kh, kw = m.kernel_size
        return kh == kw and kh % 2 == 1 and kh > 1

    if convertible(module):
        return weighted_conv2d_from(module, densities.get(module.kernel_size[0]))
    for name, child in module.named_children():
        if convertible(child):
            setattr(module, name, weighted_conv2d_from(child, densities.get(child.kernel_size[0])))
        else:
            convert_to_weighted_conv(child, densities)
    return module


@register_token_mixer("weighted_conv")
class WeightedDepthwiseMixer(WeightedConv2d):
    """Token mixer: a depthwise 7x7 weighted convolution (the density matters most at 7x7)."""

    def __init__(self, dim: int, kernel_size: int = 7, density: Sequence[float] | None = None):
        super().__init__(
            dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, density=density
        )
