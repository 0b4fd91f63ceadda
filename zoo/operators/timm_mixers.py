"""Token mixers of timm's own models, exposed to the operator grid.

- `dfc`: GhostNetV2's DFC attention (`GhostNetV2: Enhance Cheap Operation with Long-Range
  Attention`, Tang et al., NeurIPS 2022, arXiv 2211.12905): a cheap Ghost module gated by
  decoupled fully-connected (1x5 then 5x1 depthwise) attention computed at half resolution.
- `inception_dw`: InceptionNeXt's Inception depthwise convolution (`InceptionNeXt: When
  Inception Meets ConvNeXt`, Yu et al., CVPR 2024, arXiv 2303.16900): an eighth of the channels
  each through a 3x3, a 1x11 and an 11x1 depthwise conv, the rest untouched.
- `gpsa`: ConViT's gated positional self-attention (`ConViT: Improving Vision Transformers with
  Soft Convolutional Inductive Biases`, d'Ascoli et al., ICML 2021, arXiv 2103.10697): each head
  blends content attention with a learned positional attention initialised as a convolution.

The layers are timm's; this module only adapts them to (B, C, H, W) in and out.
"""

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from timm.models.convit import GPSA
from timm.models.ghostnet import GhostModuleV2
from timm.models.inception_next import InceptionDWConv2d
from torch import nn

from .registry import register_token_mixer

__all__ = ["DFCAttentionMixer", "GPSAMixer", "relative_indices"]

# timm's layer already maps (B, C, H, W) to itself at any size: registered as it is
register_token_mixer("inception_dw")(InceptionDWConv2d)


@register_token_mixer("dfc")
class DFCAttentionMixer(nn.Module):
    """GhostNetV2's Ghost module with DFC attention, `dim` to `dim` channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.ghost = GhostModuleV2(dim, dim, act_layer=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ghost = self.ghost
        # as timm's forward, but pooling with ceil_mode so that 1-pixel maps keep a gate
        gate = ghost.short_conv(F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True))
        primary = ghost.primary_conv(x)
        out = torch.cat((primary, ghost.cheap_operation(primary)), dim=1)[:, : ghost.out_chs]
        return out * F.interpolate(gate.sigmoid(), size=out.shape[-2:], mode="nearest")


def relative_indices(height: int, width: int) -> torch.Tensor:
    """ConViT's (1, N, N, 3) table of (dx, dy, dx^2 + dy^2) between tokens, for any H x W grid.

    timm computes it for square grids only; the grid also runs on non-square maps.
    """
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    xs, ys = xs.flatten().float(), ys.flatten().float()
    dx, dy = xs[None, :] - xs[:, None], ys[None, :] - ys[:, None]
    return torch.stack((dx, dy, dx**2 + dy**2), dim=-1)[None]


@register_token_mixer("gpsa")
@register_notrace_module  # rebuilds its position table when the size changes: a torch.fx leaf
class GPSAMixer(nn.Module):
    """ConViT's GPSA over the H x W tokens of a feature map (32 channels per head)."""

    def __init__(self, dim: int, head_dim: int = 32, locality_strength: float = 1.0):
        super().__init__()
        self.gpsa = GPSA(
            dim, num_heads=max(dim // head_dim, 1), locality_strength=locality_strength
        )
        if not self.gpsa.v.weight.is_meta:  # the convolution-like initialisation reads tensors
            self.gpsa.local_init()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if self.gpsa.rel_indices.shape[1] != height * width:
            table = relative_indices(height, width).to(x.device, self.gpsa.qk.weight.dtype)
            self.gpsa.rel_indices = table
        y = self.gpsa(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(batch, channels, height, width)
