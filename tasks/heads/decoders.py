"""Light segmentation decoders over any backbone's feature pyramid: semantic FPN and UPerNet.

Written here rather than taken from segmentation_models_pytorch: that library builds its own
encoders and expects five levels at strides 2-32, while a zoo backbone gives whatever levels its
`feature_info` says (strides 4-32, 12 and 17 for CrossViT, all 16 for ConViT). The top-down
pathway is torchvision's maintained `FeaturePyramidNetwork`; what is added is the per-level
branch and fusion of each decoder. Everything is sized by interpolation to the finest level, so
any set of strides works. GroupNorm, not BatchNorm, so that a batch of one 1x1 map trains.
"""

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation, FeaturePyramidNetwork


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups, the largest count that divides `channels`."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> Conv2dNormActivation:
    return Conv2dNormActivation(in_channels, out_channels, kernel_size, norm_layer=group_norm)


def _top_down(fpn: FeaturePyramidNetwork, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return list(fpn(OrderedDict((str(i), f) for i, f in enumerate(features))).values())


def _finest(features: Sequence[torch.Tensor]) -> tuple[int, int]:
    return max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])


class FPNDecoder(nn.Module):
    """Semantic FPN (Kirillov et al., Panoptic Feature Pyramid Networks, CVPR 2019), light.

    FPN top-down pathway; each level then gets one 3x3 conv-GN-ReLU (the paper stacks one per
    2x upsampling step) and is resized to the finest level; the levels are summed and
    classified per pixel, then upsampled to the input.

    Args:
        in_channels: Channels of each pyramid level, finest first.
        num_classes: Output classes.
        channels: Width of the decoder.
        dropout: Dropout before the classifier.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 64,
                 dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(in_channels), channels, norm_layer=group_norm)
        self.branches = nn.ModuleList(_conv(channels, channels) for _ in in_channels)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(
        self, features: Sequence[torch.Tensor], output_size: tuple[int, int]
    ) -> torch.Tensor:
        size = _finest(features)
        fused = sum(
            F.interpolate(branch(level), size=size, mode="bilinear", align_corners=False)
            for branch, level in zip(self.branches, _top_down(self.fpn, features))
        )
        logits = self.classifier(fused)
        return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: pooled context at several grid sizes, fused with the input."""

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(in_channels, channels, 1)) for s in scales
        )
        self.bottleneck = _conv(in_channels + len(scales) * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False)
            for stage in self.stages
        ]
        return self.bottleneck(torch.cat([x, *pooled], 1))


class UPerNetDecoder(nn.Module):
    """UPerNet (Xiao et al., Unified Perceptual Parsing for Scene Understanding, ECCV 2018).

    Pyramid pooling on the coarsest level, an FPN over the rest with it on top, then every
    level resized to the finest, concatenated, fused by a 3x3 conv and classified per pixel.

    Args:
        in_channels: Channels of each pyramid level, finest first.
        num_classes: Output classes.
        channels: Width of the decoder.
        pool_scales: Grid sizes of the pyramid pooling module.
        dropout: Dropout before the classifier.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 64,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels, pool_scales)
        self.fpn = FeaturePyramidNetwork([*in_channels[:-1], channels], channels,
                                         norm_layer=group_norm)  # fmt: skip
        self.fuse = _conv(len(in_channels) * channels, channels)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(
        self, features: Sequence[torch.Tensor], output_size: tuple[int, int]
    ) -> torch.Tensor:
        features = [*features[:-1], self.ppm(features[-1])]
        size = _finest(features)
        levels = [
            F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            for level in _top_down(self.fpn, features)
        ]
        logits = self.classifier(self.fuse(torch.cat(levels, 1)))
        return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
