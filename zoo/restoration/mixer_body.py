"""An isotropic low-resolution restoration body around any token mixer of the zoo.

The operator grid (zoo/backbones/metaformer_grid.py) compares token mixers inside one classifier;
this body compares them inside one restoration network: a 3x3 head, `depth` MetaFormer blocks
(norm -> token mixer -> layer-scale residual; norm -> 1x1 MLP -> layer-scale residual) at the
input's own resolution, a 3x3 convolution with a long skip, a sub-pixel upsampler (3x3 convolution
to scale^2 * C channels + PixelShuffle), and a global residual over the bicubic upscale of the
input. The mixer is any name of `zoo.operators.list_token_mixers()`; at scale 1 the network is a
residual denoiser.

    timm.create_model("mixer_body", mixer="gnconv", scale=3)
"""

from contextlib import nullcontext

import torch
from timm.layers import ConvMlp, LayerNorm2d, LayerScale2d
from torch import nn

from zoo.operators import create_token_mixer

from .pixels import bicubic_resize

__all__ = ["MixerBody"]


class MixerBlock(nn.Module):
    """norm -> token mixer -> residual; norm -> MLP -> residual, both layer-scaled."""

    def __init__(self, dim: int, mixer: str, mlp_ratio: float, layer_scale_init: float):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.mixer = create_token_mixer(mixer, dim)
        self.ls1 = LayerScale2d(dim, layer_scale_init)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.ls2 = LayerScale2d(dim, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.mixer(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class MixerBody(nn.Module):
    """Isotropic restoration network whose spatial operator is a registered token mixer.

    Args:
        in_chans: Image channels.
        scale: Upscaling factor (1: denoising).
        mixer: Token mixer name (`zoo.operators.list_token_mixers()`).
        dim: Width of the body.
        depth: Blocks.
        mlp_ratio: Hidden width of the MLPs over `dim`.
        layer_scale_init: Initial layer-scale value.
        device: Where to build the parameters (`meta` for a shape-only model).
        dtype: Parameter dtype.
    """

    restoration_net = True

    def __init__(
        self,
        in_chans: int = 3,
        scale: int = 3,
        mixer: str = "gnconv",
        dim: int = 64,
        depth: int = 6,
        mlp_ratio: float = 2.0,
        layer_scale_init: float = 1e-2,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_chans, self.scale, self.mixer = in_chans, scale, mixer
        with torch.device(device) if device is not None else nullcontext():
            self.conv_first = nn.Conv2d(in_chans, dim, 3, padding=1)
            self.blocks = nn.Sequential(
                *[MixerBlock(dim, mixer, mlp_ratio, layer_scale_init) for _ in range(depth)]
            )
            self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
            self.upsample = nn.Sequential(
                nn.Conv2d(dim, in_chans * scale**2, 3, padding=1), nn.PixelShuffle(scale)
            )
        # the residual branch starts at zero: the untrained network is the bicubic upscale
        nn.init.zeros_(self.upsample[0].weight)
        nn.init.zeros_(self.upsample[0].bias)
        if dtype is not None:
            self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv_first(x)
        features = features + self.conv_after_body(self.blocks(features))
        base = bicubic_resize(x, float(self.scale)) if self.scale > 1 else x
        return base + self.upsample(features)
