"""TVConv: translation variant convolution for layout-aware visual processing.

`TVConv: Efficient Translation Variant Convolution for Layout-aware Visual Processing`
    Chen et al., CVPR 2022, arXiv 2203.10489, https://github.com/JierunChen/TVConv

Faces, fundus images and other aligned inputs vary a lot across positions of one image and
little across images, so TVConv gives every output position its own depthwise kernel, and makes
those kernels a function of the position only (not of the input): learnable affinity maps
(`affinity_chans` x H x W, initialised to ones) pass through a weight-generating block (3x3 conv
-> LayerNorm over C x H x W -> ReLU, `hidden_layers` + 1 times, then a 3x3 conv to C k^2
channels) that outputs a k x k kernel per channel and position. The block is over-parameterized
for training; for inference its output can be computed once (`kernel_field`) and kept.

The paper sizes the affinity maps (and the LayerNorms) to the layer's output resolution
(`layout_size`). Here the kernel field is generated at that size and resized bilinearly to the
actual output size when it differs, so the layer runs on any input (at the layout size it is
the paper's operator exactly).

Layout: NCHW.
"""

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module, to_2tuple
from torch import nn

from .registry import register_token_mixer

__all__ = ["TVConv", "translation_variant_conv2d"]


def translation_variant_conv2d(
    x: torch.Tensor, kernels: torch.Tensor, stride: int = 1
) -> torch.Tensor:
    """Depthwise convolution with one k x k kernel per channel and output position.

    Args:
        x: (B, C, H, W) input, zero-padded by k // 2.
        kernels: (C, k, k, H_out, W_out) kernels, shared by the batch.
        stride: The stride.

    Returns:
        (B, C, H_out, W_out): out[b, c, p] = sum_(i, j) kernels[c, i, j, p] x[b, c, s p + (i, j)].
    """
    batch, channels = x.shape[:2]
    size, height, width = kernels.shape[1], kernels.shape[3], kernels.shape[4]
    patches = F.unfold(x, size, padding=size // 2, stride=stride)
    patches = patches.view(batch, channels, size * size, height, width)
    return (patches * kernels.reshape(1, channels, size * size, height, width)).sum(2)


class _GeneratorBlock(nn.Sequential):
    """3x3 conv -> LayerNorm over (C, H, W) -> ReLU, at the layout resolution."""

    def __init__(self, in_chs: int, out_chs: int, layout: tuple[int, int], device=None, dtype=None):
        dd = {"device": device, "dtype": dtype}
        super().__init__(
            nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False, **dd),
            nn.LayerNorm([out_chs, *layout], **dd),
            nn.ReLU(inplace=True),
        )


def _weight_generator(
    in_chs: int, hidden_chs: int, out_chs: int, hidden_layers: int, layout, device=None, dtype=None
) -> nn.Sequential:
    dd = {"device": device, "dtype": dtype}
    blocks = [_GeneratorBlock(in_chs, hidden_chs, layout, **dd)]
    blocks += [_GeneratorBlock(hidden_chs, hidden_chs, layout, **dd) for _ in range(hidden_layers)]
    blocks.append(nn.Conv2d(hidden_chs, out_chs, 3, padding=1, bias=False, **dd))
    return nn.Sequential(*blocks)


@register_notrace_module  # resizes its kernel field by the input size: a leaf for FX
class TVConv(nn.Module):
    """Translation variant depthwise convolution (`channels` in and out, zero 'same' padding).

    Args:
        channels: Input and output channels.
        kernel_size: Odd kernel size.
        stride: The stride.
        layout_size: (H, W) of the output at the nominal input size: the resolution of the
            affinity maps and of the weight generator's LayerNorms.
        affinity_chans: Channels of the affinity maps.
        hidden_chans: Channels of the weight-generating block.
        hidden_layers: Conv-LN-ReLU blocks after the first one in the weight-generating block.
        bias: Also generate a per-position bias (a second generator, as in the official code).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        layout_size: int | tuple[int, int] = 14,
        affinity_chans: int = 4,
        hidden_chans: int = 64,
        hidden_layers: int = 3,
        bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if kernel_size % 2 == 0:
            raise ValueError(f"TVConv needs an odd kernel_size, got {kernel_size}")
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.layout_size = to_2tuple(layout_size)
        self.affinity_maps = nn.Parameter(torch.empty(1, affinity_chans, *self.layout_size, **dd))
        self.weight_generator = _weight_generator(
            affinity_chans,
            hidden_chans,
            channels * kernel_size**2,
            hidden_layers,
            self.layout_size,
            **dd,
        )
        self.bias_generator = (
            _weight_generator(
                affinity_chans, hidden_chans, channels, hidden_layers, self.layout_size, **dd
            )
            if bias
            else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: affinity maps of ones, Kaiming (fan-out) convs."""
        nn.init.ones_(self.affinity_maps)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def _resize(self, field: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if (height, width) == self.layout_size:
            return field
        return F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)

    def kernel_field(self, height: int, width: int) -> torch.Tensor:
        """(C, k, k, height, width): the kernel of every channel at every output position."""
        field = self._resize(self.weight_generator(self.affinity_maps), height, width)
        return field.view(self.channels, self.kernel_size, self.kernel_size, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad, k, s = self.kernel_size // 2, self.kernel_size, self.stride
        height = (x.shape[-2] + 2 * pad - k) // s + 1
        width = (x.shape[-1] + 2 * pad - k) // s + 1
        out = translation_variant_conv2d(x, self.kernel_field(height, width), s)
        if self.bias_generator is not None:
            out = out + self._resize(self.bias_generator(self.affinity_maps), height, width)
        return out


@register_token_mixer("tvconv")
class TVConvMixer(TVConv):
    """Token mixer: a 3x3 TVConv with the official class's light generator (16 channels, one
    hidden block) and a 14 x 14 layout (stage 3 of a 224 MetaFormer), resized to each stage."""

    def __init__(
        self, dim: int, layout_size: int = 14, hidden_chans: int = 16, hidden_layers: int = 1
    ):
        super().__init__(
            dim, layout_size=layout_size, hidden_chans=hidden_chans, hidden_layers=hidden_layers
        )
