"""The Channel-Time Learning (CTL) module of SqueezeTime, for clips whose time is in the channels.

`No Time to Waste: Squeeze Time into Channel for Mobile Video Understanding`
    Zhai et al., arXiv 2405.08344, https://github.com/xinghaochen/SqueezeTime (Apache-2.0).

Layout NCHW, where the channels of the input carry the T frames of a clip (3T channels at the
stem; after it, channels mix time and features). Two complementary branches:

- Temporal importance learning (TIL): a squeeze-excitation style gate over the channels
  (global pool, 1x1 conv, BN, ReLU, 1x1 conv, sigmoid) weighs each channel, hence each time
  step's share of it; a 1x1 conv mixes the weighted channels.
- Inter-temporal object interaction (IOI): a 3x3 conv of the input, gated by a small branch
  (3x3 conv to 16 channels, BN, ReLU, + a learned position embedding, 7x7 conv, BN, ReLU, 3x3
  conv, sigmoid) that sees the importance-weighted input. Folding time into channels loses the
  temporal position of objects; the position embedding restores it.

    CTL(x) = conv1x1(w * x) + conv3x3(x) * gate(w * x),   w = TIL(x)

Our own implementation of the paper's module; the facts (layer order, the 16-channel gate, the
position embedding at the gate's middle, resized to the map) follow the official repository.

`FramesCTL` puts a CTL over the frames of a per-frame 2D backbone: it folds (B * T, C, H, W)
maps into (B, T * C, H, W), applies a residual CTL, and unfolds. It makes sense on NCHW stage
outputs of convolutional backbones where T * C is small (the early stages: the 3x3 conv costs
9 (T C)^2 weights), not on token sequences (ViTs) or on late, wide stages.
"""

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

__all__ = ["ChannelTimeLearning", "FramesCTL", "InterTemporalObjectInteraction"]


class InterTemporalObjectInteraction(nn.Module):
    """The IOI branch: conv3x3(x) gated by a position-aware branch over the weighted input.

    Args:
        in_chs: Input channels.
        out_chs: Output channels.
        pos_size: Side of the learned position embedding (the map's side at the paper's input);
            it is bilinearly resized to other map sizes.
        gate_chs: Width of the gate branch (16 in the paper).
    """

    def __init__(self, in_chs: int, out_chs: int, pos_size: int = 7, gate_chs: int = 16,
                 device=None, dtype=None):  # fmt: skip
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.short_conv = nn.Conv2d(in_chs, out_chs, 3, padding=1, **dd)
        self.encode = nn.Sequential(
            nn.Conv2d(in_chs, gate_chs, 3, padding=1, **dd),
            nn.BatchNorm2d(gate_chs, **dd),
            nn.ReLU(inplace=True),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, gate_chs, pos_size, pos_size, **dd))
        self.mix = nn.Sequential(
            nn.Conv2d(gate_chs, gate_chs, 7, padding=3, **dd),
            nn.BatchNorm2d(gate_chs, **dd),
            nn.ReLU(inplace=True),
        )
        self.gate = nn.Sequential(nn.Conv2d(gate_chs, out_chs, 3, padding=1, **dd), nn.Sigmoid())
        nn.init.kaiming_normal_(self.pos_embed, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
        g = self.encode(x * importance)
        return self.short_conv(x) * self.gate(self.mix(g + resize_position(self.pos_embed, g)))


@register_notrace_function  # a shape-dependent branch: a leaf for torch.fx
def resize_position(pos: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The position embedding at `like`'s spatial size (bilinear when it differs)."""
    if pos.shape[-2:] != like.shape[-2:]:
        pos = F.interpolate(pos, size=like.shape[-2:], mode="bilinear", align_corners=True)
    return pos


class ChannelTimeLearning(nn.Module):
    """CTL: temporal importance learning + inter-temporal object interaction (see above).

    Args:
        in_chs: Input channels (time folded in).
        out_chs: Output channels.
        pos_size: Side of IOI's position embedding.
    """

    def __init__(self, in_chs: int, out_chs: int, pos_size: int = 7, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.importance = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_chs, in_chs, 1, bias=False, **dd),
            nn.BatchNorm2d(in_chs, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_chs, in_chs, 1, bias=False, **dd),
            nn.Sigmoid(),
        )
        self.temporal_conv = nn.Conv2d(in_chs, out_chs, 1, bias=False, **dd)
        self.interaction = InterTemporalObjectInteraction(in_chs, out_chs, pos_size, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.importance(x)
        return self.temporal_conv(weight * x) + self.interaction(x, weight)


class FramesCTL(nn.Module):
    """A residual CTL across the T frames of per-frame NCHW maps (B * T, C, H, W).

    The residual branch ends in a BatchNorm whose scale starts at zero, so that inserting it
    into a trained 2D backbone starts as the identity.

    Args:
        channels: Channels C of each frame's map.
        frames: Frames T per clip.
        pos_size: Side of IOI's position embedding.
    """

    def __init__(self, channels: int, frames: int, pos_size: int = 7, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.channels, self.frames = channels, frames
        folded = channels * frames
        self.ctl = ChannelTimeLearning(folded, folded, pos_size, **dd)
        self.norm = nn.BatchNorm2d(folded, **dd)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"FramesCTL needs NCHW maps with {self.channels} channels, got shape "
                f"{tuple(x.shape)}: choose an NCHW stage of a convolutional backbone"
            )
        n, c, h, w = x.shape
        folded = x.reshape(n // self.frames, self.frames * c, h, w)
        folded = folded + self.norm(self.ctl(folded))
        return folded.reshape(n, c, h, w)
