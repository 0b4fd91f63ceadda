"""Recursive gated convolution (g^n Conv) and its global-filter spatial mixer.

`HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions`
    Rao et al., NeurIPS 2022, arXiv 2207.14284, https://github.com/raoyongming/HorNet

g^n Conv projects its input into one gate `p0` and a stack of features that a single depthwise
mixer (a 7x7 depthwise conv, or a global/local filter) mixes spatially. The interaction order then
grows one step per recursion: `p_{k+1} = f_k(p_k) * q_k`, with the channel count doubling at each
step, so an order-n operator costs about as much as one self-attention layer.

Layout: NCHW in and out.
"""

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, trunc_normal_
from timm.models import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = ["GlobalLocalFilter", "GnConv", "gnconv_channel_splits"]


def gnconv_channel_splits(dim: int, order: int) -> list[int]:
    """Channel widths of the recursion, smallest first: `[dim / 2^(n-1), ..., dim / 2, dim]`."""
    if dim % 2 ** (order - 1):
        raise ValueError(
            f"g^n Conv of order {order} needs dim divisible by {2 ** (order - 1)}, got {dim}"
        )
    return [dim // 2**k for k in reversed(range(order))]


# a leaf for torch.fx: its filter resampling depends on the input size
@register_notrace_module
class GlobalLocalFilter(nn.Module):
    """Half the channels through a 3x3 depthwise conv, half through a learnable global filter.

    The global filter is a complex weight on the rFFT of the features (sized for the 224 input);
    at other input sizes it is resampled bilinearly to the actual spectrum, as the paper does for
    dense prediction at higher resolution. The two halves are interleaved channel by channel.
    """

    def __init__(
        self,
        dim: int,
        h: int = 14,
        w: int = 8,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        half = dim // 2
        self.pre_norm = LayerNorm2d(dim, eps=1e-6, **dd)
        self.dw = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False, **dd)
        # real and imaginary parts, (C, H, W_rfft, 2)
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2, **dd))
        self.post_norm = LayerNorm2d(dim, eps=1e-6, **dd)
        trunc_normal_(self.complex_weight, std=0.02)

    def _filter_for(self, height: int, width: int) -> torch.Tensor:
        weight = self.complex_weight
        if weight.shape[1] != height or weight.shape[2] != width:
            weight = F.interpolate(
                weight.permute(3, 0, 1, 2),
                size=(height, width),
                mode="bilinear",
                align_corners=True,
            ).permute(1, 2, 3, 0)
        return torch.view_as_complex(weight.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        local, glob = x.chunk(2, dim=1)
        local = self.dw(local)
        height, width = glob.shape[-2], glob.shape[-1]
        # FFTs run in float32: half precision rFFT needs power-of-two sizes
        spectrum = torch.fft.rfft2(glob.float(), dim=(2, 3), norm="ortho")
        spectrum = spectrum * self._filter_for(spectrum.shape[-2], spectrum.shape[-1])
        glob = torch.fft.irfft2(spectrum, s=(height, width), dim=(2, 3), norm="ortho").to(x.dtype)
        x = torch.stack((local, glob), dim=2).flatten(1, 2)
        return self.post_norm(x)


class GnConv(nn.Module):
    """Recursive gated convolution of order `order`.

    Args:
        dim: Input and output channels.
        order: Interaction order n (2 to 5 in HorNet's stages).
        scale: Scale on the depthwise mixer's output (HorNet uses 1/3).
        kernel_size: Kernel of the depthwise mixer when `global_filter` is off.
        global_filter: Use the global/local filter as the spatial mixer instead of a depthwise conv.
        filter_size: (h, w) of the global filter's rFFT grid, for the 224 input.
    """

    def __init__(
        self,
        dim: int,
        order: int = 5,
        scale: float = 1.0,
        kernel_size: int = 7,
        global_filter: bool = False,
        filter_size: tuple[int, int] = (14, 8),
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.order = order
        self.splits = gnconv_channel_splits(dim, order)
        mixed = sum(self.splits)
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1, **dd)
        if global_filter:
            self.dwconv = GlobalLocalFilter(mixed, *filter_size, **dd)
        else:
            self.dwconv = nn.Conv2d(
                mixed, mixed, kernel_size, padding=kernel_size // 2, groups=mixed, **dd
            )
        self.pws = nn.ModuleList(
            nn.Conv2d(self.splits[k], self.splits[k + 1], 1, **dd) for k in range(order - 1)
        )
        self.proj_out = nn.Conv2d(dim, dim, 1, **dd)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # indexing (not unpacking) the splits keeps the graph traceable by torch.fx and TorchScript
        projected = self.proj_in(x).split((self.splits[0], sum(self.splits)), dim=1)
        q = (self.dwconv(projected[1]) * self.scale).split(self.splits, dim=1)
        x = projected[0] * q[0]
        for k, pw in enumerate(self.pws):
            x = pw(x) * q[k + 1]
        return self.proj_out(x)


@register_token_mixer("gnconv")
def _gnconv_mixer(dim: int, order: int = 3, **kwargs) -> GnConv:
    # order 3 keeps dim divisible for every MetaFormer-S12 width (64, 128, 320, 512)
    return GnConv(dim, order=order, scale=1 / 3, **kwargs)


@register_token_mixer("gnconv_gf")
def _gnconv_gf_mixer(dim: int, order: int = 3, **kwargs) -> GnConv:
    return GnConv(dim, order=order, scale=1 / 3, global_filter=True, **kwargs)
