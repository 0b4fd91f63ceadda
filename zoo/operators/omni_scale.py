"""Omni-scale convolution: T streams of stacked Lite 3x3 convs fused by a unified aggregation gate.

`Omni-Scale Feature Learning for Person Re-Identification`
    Zhou et al., ICCV 2019, arXiv 1905.00953, https://github.com/KaiyangZhou/deep-person-reid
`Learning Generalisable Omni-Scale Representations for Person Re-Identification` (OSNet-AIN)
    Zhou et al., TPAMI 2021, arXiv 1910.06827

A Lite 3x3 is a pointwise conv followed by a depthwise 3x3 (then BN and ReLU). Stream t stacks t
of them, so its receptive field is (2t + 1) x (2t + 1): 3, 5, 7, 9 for the paper's T = 4 streams.
One channel gate (global average pool -> FC -> ReLU -> FC -> sigmoid), shared by every stream,
weighs each stream's channels from that stream's own content, and the gated streams are summed:
the mix of scales is input-dependent, channel by channel.

OSNet-AIN swaps the batch norm that closes the residual branch for an affine instance norm in the
blocks its architecture search picked (`instance_norm=True` here).

Layout: NCHW in and out.
"""

import torch
from torch import nn

from .registry import register_token_mixer

__all__ = ["ChannelGate", "LiteConv3x3", "OmniScaleBlock", "OmniScaleConv"]


class LiteConv3x3(nn.Module):
    """Pointwise conv (linear) -> depthwise 3x3 conv -> BN -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.pw = nn.Conv2d(in_chs, out_chs, 1, bias=False, **dd)
        self.dw = nn.Conv2d(out_chs, out_chs, 3, padding=1, groups=out_chs, bias=False, **dd)
        self.bn = nn.BatchNorm2d(out_chs, **dd)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.dw(self.pw(x))))


class ChannelGate(nn.Module):
    """Unified aggregation gate: `x * sigmoid(fc2(relu(fc1(avgpool(x)))))`, one weight per channel.

    Args:
        chs: Channels of the gated features.
        reduction: Hidden width of the gate is `chs // reduction` (16 in OSNet).
    """

    def __init__(self, chs: int, reduction: int = 16, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        # the official gate is chs // 16 wide; the floor of 1 only matters below 16 channels
        hidden = max(chs // reduction, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(chs, hidden, 1, **dd)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, chs, 1, **dd)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class OmniScaleConv(nn.Module):
    """The residual branch of the OSNet bottleneck (no shortcut, no final activation).

    1x1 conv-BN-ReLU down to `out_chs // bottleneck_ratio` channels, `num_streams` streams where
    stream t stacks t Lite 3x3 convs, one shared `ChannelGate` applied to each stream, the sum, and
    a linear 1x1 conv-norm back up to `out_chs`.

    Args:
        in_chs: Input channels.
        out_chs: Output channels (defaults to `in_chs`).
        bottleneck_ratio: Width reduction inside the branch (4 in OSNet).
        num_streams: T, the number of streams; stream t sees a (2t + 1) x (2t + 1) window.
        gate_reduction: Hidden-width reduction of the aggregation gate.
        instance_norm: Close the branch with an affine instance norm instead of batch norm
            (OSNet-AIN's "IN inside the residual" block).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int | None = None,
        bottleneck_ratio: int = 4,
        num_streams: int = 4,
        gate_reduction: int = 16,
        instance_norm: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        out_chs = out_chs or in_chs
        if num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {num_streams}")
        if out_chs % bottleneck_ratio:
            raise ValueError(
                f"out_chs={out_chs} must be divisible by bottleneck_ratio={bottleneck_ratio}"
            )
        mid_chs = out_chs // bottleneck_ratio
        self.reduce = nn.Sequential(
            nn.Conv2d(in_chs, mid_chs, 1, bias=False, **dd),
            nn.BatchNorm2d(mid_chs, **dd),
            nn.ReLU(inplace=True),
        )
        self.streams = nn.ModuleList(
            nn.Sequential(*[LiteConv3x3(mid_chs, mid_chs, **dd) for _ in range(depth)])
            for depth in range(1, num_streams + 1)
        )
        self.gate = ChannelGate(mid_chs, reduction=gate_reduction, **dd)
        if instance_norm:
            norm = nn.InstanceNorm2d(out_chs, affine=True, **dd)
        else:
            norm = nn.BatchNorm2d(out_chs, **dd)
        self.expand = nn.Sequential(nn.Conv2d(mid_chs, out_chs, 1, bias=False, **dd), norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        fused = torch.zeros_like(x)
        for stream in self.streams:
            fused = fused + self.gate(stream(x))
        return self.expand(fused)


class OmniScaleBlock(nn.Module):
    """OSNet's bottleneck: `relu(OmniScaleConv(x) + shortcut(x))`.

    The shortcut is the identity, or a linear 1x1 conv-BN when the channel count changes.
    Arguments as for `OmniScaleConv`.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        bottleneck_ratio: int = 4,
        num_streams: int = 4,
        gate_reduction: int = 16,
        instance_norm: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = OmniScaleConv(
            in_chs,
            out_chs,
            bottleneck_ratio=bottleneck_ratio,
            num_streams=num_streams,
            gate_reduction=gate_reduction,
            instance_norm=instance_norm,
            **dd,
        )
        if in_chs == out_chs:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, bias=False, **dd), nn.BatchNorm2d(out_chs, **dd)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x) + self.shortcut(x))


@register_token_mixer("omni_scale")
def _omni_scale_mixer(dim: int, **kwargs) -> OmniScaleConv:
    # The bottleneck branch as it stands in OSNet: its 1x1 reduce/expand keep the mixer near
    # 1.1 * dim^2 parameters (ten full-width Lite 3x3 streams would cost 10 * dim^2), and it
    # ends linear (conv-BN), as a mixer feeding a residual sum should.
    return OmniScaleConv(dim, dim, **kwargs)
