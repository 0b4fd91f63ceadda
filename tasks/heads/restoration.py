"""Any backbone's feature pyramid as the encoder of an image restoration network.

Classification backbones discard detail early (a stride-4 stem is common), which restoration
cannot afford. `PyramidRestorer` keeps it: a shallow path of two 3x3 convolutions at the input's
own resolution carries the detail, an FPN (torchvision's) over the backbone's `features_only`
pyramid brings the context, both meet at full input resolution and go through a few residual
blocks, and a sub-pixel upsampler (3x3 convolution + PixelShuffle) predicts the residual over the
bicubic upscale of the input (over the input itself at scale 1, i.e. for denoising).
"""

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from zoo.restoration.pixels import bicubic_resize

from .pyramid import FeaturePyramidBackbone


def fixed_input_size(encoder: nn.Module) -> tuple[int, int] | None:
    """The one input size a fixed-size encoder (ConViT, CrossViT ...) accepts, else None.

    timm marks such models with `fixed_input_size` in their pretrained cfg and keeps the size
    they were built for in an `img_size` attribute (the model's or its patch embedding's).
    """
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    if not cfg.get("fixed_input_size", False):
        return None
    for module in encoder.modules():
        size = getattr(module, "img_size", None)
        if size is not None:
            return tuple(size) if isinstance(size, Sequence) else (size, size)
    return tuple(cfg["input_size"][-2:])


class ResidualBlock(nn.Module):
    """conv3x3 -> GELU -> conv3x3, plus the input."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PyramidRestorer(nn.Module):
    """Restoration network over a backbone pyramid: pixels in [0, 1] -> pixels, `scale` x larger.

    Args:
        pyramid: The backbone as a feature pyramid (tasks.heads.feature_pyramid).
        in_chans: Image channels.
        scale: Upscaling factor (1: same-size restoration, e.g. denoising).
        mean: The backbone's input normalisation mean (per channel).
        std: The backbone's input normalisation std.
        width: Channels of the FPN, the shallow path and the refinement blocks.
        refine_blocks: Residual blocks at full input resolution.
    """

    def __init__(
        self,
        pyramid: FeaturePyramidBackbone,
        in_chans: int,
        scale: int,
        mean: Sequence[float],
        std: Sequence[float],
        width: int = 64,
        refine_blocks: int = 2,
    ):
        super().__init__()
        self.pyramid, self.scale = pyramid, scale
        self.encoder_size = fixed_input_size(pyramid.body)
        self.multiple = max(pyramid.reductions)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.fpn = FeaturePyramidNetwork(list(pyramid.channels), width)
        self.shallow = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.refine = nn.Sequential(*[ResidualBlock(width) for _ in range(refine_blocks)])
        self.upsample = nn.Sequential(
            nn.Conv2d(width, in_chans * scale**2, 3, padding=1), nn.PixelShuffle(scale)
        )
        # the residual starts at zero: the untrained network is the bicubic upscale (or identity)
        nn.init.zeros_(self.upsample[0].weight)
        nn.init.zeros_(self.upsample[0].bias)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """The FPN's finest map, for `pixels` of any size."""
        encoder_input = (pixels - self.mean) / self.std
        if self.encoder_size is not None:
            encoder_input = F.interpolate(
                encoder_input, size=self.encoder_size, mode="bilinear", align_corners=False
            )
        features = self.pyramid(encoder_input)
        pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        return next(iter(pyramid.values()))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        h, w = pixels.shape[-2:]
        # backbones with windows or patch merging need sides that their strides divide
        padded = F.pad(pixels, (0, -w % self.multiple, 0, -h % self.multiple), mode="replicate")
        context = F.interpolate(
            self.encode(padded), size=padded.shape[-2:], mode="bilinear", align_corners=False
        )
        features = self.refine(self.shallow(padded) + context)[..., :h, :w]
        base = bicubic_resize(pixels, self.scale) if self.scale > 1 else pixels
        return base + self.upsample(features)
