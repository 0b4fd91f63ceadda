"""Phantom Convolution: a Ghost convolution with a grouped primary and a depthwise cheap branch.

`MODIPHY: Multimodal Obscured Detection for IoT using PHantom Convolution-Enabled Faster YOLO`
    Mukherjee, Beard & Li, ICIP 2024, arXiv 2402.07894,
    https://github.com/shubha07m/On-device-computer-vision-experiments-with-IoT (yolo_phantom)

Like a Ghost convolution, half of the output channels ("intrinsic" maps) come from a real
convolution and the other half ("phantoms") from a cheap depthwise convolution of those maps;
the two halves are concatenated. Phantom Convolution makes the primary convolution grouped (4
groups) and widens both kernels to 5x5: far fewer weights and multiply-adds than a dense conv of
the same in/out channels, with a larger receptive field. Each convolution is followed by batch
norm and SiLU, as in the YOLOv8 conv block it replaces (YOLO Phantom uses it for the stride-2
convs of its last stage and head).

Layout: NCHW.
"""

import torch
from timm.layers import ConvNormAct
from torch import nn

from .registry import register_token_mixer

__all__ = ["PhantomConv2d", "phantom_mixer"]


class PhantomConv2d(nn.Module):
    """Drop-in for a conv + BN + SiLU block mapping `in_channels` to `out_channels`.

    Args:
        in_channels: Input channels (divisible by `groups`).
        out_channels: Output channels (even; half of them divisible by `groups`).
        stride: Stride of the primary convolution (the phantom branch keeps its resolution).
        kernel_size: Kernel of both convolutions (5 in the paper).
        groups: Groups of the primary convolution (4 in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 5,
        groups: int = 4,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        intrinsic = out_channels // 2
        if out_channels % 2 or in_channels % groups or intrinsic % groups:
            raise ValueError(
                f"Phantom convolution needs even out_channels and in_channels, out_channels / 2 "
                f"divisible by groups={groups}; got {in_channels} -> {out_channels}"
            )
        conv = dict(kernel_size=kernel_size, act_layer=nn.SiLU, **dd)
        self.primary = ConvNormAct(in_channels, intrinsic, stride=stride, groups=groups, **conv)
        self.cheap = ConvNormAct(intrinsic, intrinsic, groups=intrinsic, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)
        return torch.cat((intrinsic, self.cheap(intrinsic)), dim=1)


@register_token_mixer("phantom")
def phantom_mixer(dim: int, kernel_size: int = 5, groups: int = 4) -> PhantomConv2d:
    """Phantom convolution from `dim` to `dim` channels, a token mixer for the grid."""
    return PhantomConv2d(dim, dim, kernel_size=kernel_size, groups=groups)
