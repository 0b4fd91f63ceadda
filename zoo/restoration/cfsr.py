"""CFSR: a ConvFormer-based lightweight super-resolution network.

`Transforming Image Super-Resolution: A ConvFormer-based Efficient Approach`
    Wu et al., IEEE TIP 2024, arXiv 2401.05633, https://github.com/Aitical/CFSR

A 3x3 head, two layers of six ConvFormer blocks (norm -> large-kernel ConvFormer mixer ->
layer-scale residual; norm -> edge-preserving FFN -> layer-scale residual; a 1x1 convolution with
a residual after each layer), a norm, a 3x3 convolution with a long skip, and a one-step sub-pixel
upsampler (3x3 convolution to r^2 * C channels + PixelShuffle). Width 48, kernel 9, small kernel 3,
mlp ratio 2 (the official x2/x3/x4 configurations). The input is centred on the DIV2K RGB mean.

The paper counts the re-parameterised (inference) network; after `reparameterize()` ours has
    x2: 291,324   x3: 297,819   x4: 306,912
against the paper's 291K (x2: 26% fewer than ShuffleMixer's 394K, abstract) and 307K (x4, the
results table of the official README); x3 follows from the same architecture (298K).
The training-time network has 16,128 more parameters (the edge and small-kernel branches).
"""

from contextlib import nullcontext

import torch
from timm.layers import LayerNorm2d, LayerScale2d
from torch import nn

from zoo.operators.cfsr import EdgePreservingFFN, LargeKernelConvMod, reparameterize

__all__ = ["CFSR"]

# the DIV2K RGB mean the official model centres its input on
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class CFSRBlock(nn.Module):
    """A ConvFormer block: large-kernel modulation, then the edge-preserving FFN."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        small_kernel: int | None,
        mlp_ratio: float,
        layer_scale_init: float,
    ):
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps=1e-6)
        self.mixer = LargeKernelConvMod(dim, kernel_size, small_kernel)
        self.ls1 = LayerScale2d(dim, layer_scale_init)
        self.norm2 = LayerNorm2d(dim, eps=1e-6)
        self.ffn = EdgePreservingFFN(dim, mlp_ratio)
        self.ls2 = LayerScale2d(dim, layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.mixer(self.norm1(x)))
        return x + self.ls2(self.ffn(self.norm2(x)))


class CFSRLayer(nn.Module):
    """Blocks, then a 1x1 convolution with a residual around it."""

    def __init__(self, dim: int, depth: int, **block_kwargs):
        super().__init__()
        self.blocks = nn.Sequential(*[CFSRBlock(dim, **block_kwargs) for _ in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return x + self.conv(x)


class CFSR(nn.Module):
    """ConvFormer-based super-resolution network.

    Args:
        in_chans: Image channels.
        scale: Upscaling factor.
        embed_dim: Width of the body.
        depths: Blocks per layer.
        kernel_size: Side of the large depth-wise kernel.
        small_kernel: Side of the edge-aware re-parameterised branch (3), or None.
        mlp_ratio: Hidden width of the edge-preserving FFN over `embed_dim`.
        layer_scale_init: Initial layer-scale value.
        device: Where to build the parameters (`meta` for a shape-only model).
        dtype: Parameter dtype.
    """

    restoration_net = True

    def __init__(
        self,
        in_chans: int = 3,
        scale: int = 4,
        embed_dim: int = 48,
        depths: tuple[int, ...] = (6, 6),
        kernel_size: int = 9,
        small_kernel: int | None = 3,
        mlp_ratio: float = 2.0,
        layer_scale_init: float = 1e-6,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_chans, self.scale = in_chans, scale
        with torch.device(device) if device is not None else nullcontext():
            # subtracted before the body and added back after it (zeros for grey images);
            # not saved: a constant of the recipe, not a learned parameter
            mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, padding=1)
            block_kwargs = dict(
                kernel_size=kernel_size,
                small_kernel=small_kernel,
                mlp_ratio=mlp_ratio,
                layer_scale_init=layer_scale_init,
            )
            self.layers = nn.Sequential(*[CFSRLayer(embed_dim, d, **block_kwargs) for d in depths])
            self.norm = LayerNorm2d(embed_dim, eps=1e-6)
            self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, in_chans * scale**2, 3, padding=1), nn.PixelShuffle(scale)
            )
        if dtype is not None:
            self.to(dtype)

    def reparameterize(self) -> "CFSR":
        """Fold the edge and small-kernel branches into plain convolutions (inference form)."""
        return reparameterize(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(x - self.mean)
        x = x + self.conv_after_body(self.norm(self.layers(x)))
        return self.upsample(x) + self.mean
