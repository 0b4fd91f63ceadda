"""Pixel conventions of the restoration literature: MATLAB's bicubic resize and 8-bit outputs.

One definition for the networks (zoo), the degradations (data) and the metrics (tasks): the
bicubic baseline, the low-resolution inputs and the networks' upscaling must agree exactly.
"""

import torch
import torch.nn.functional as F


def bicubic_resize(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize (B, C, H, W) by `scale` with Keys' cubic kernel, a = -0.5, anti-aliased.

    That is MATLAB's `imresize` (and PIL's kernel): torch's anti-aliased bicubic path uses
    a = -0.5; its plain path uses a = -0.75, which rings more.
    """
    return F.interpolate(
        images, scale_factor=float(scale), mode="bicubic", antialias=True, align_corners=False
    )


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 8-bit levels: what saving a PNG does."""
    return images.clamp(0, 1).mul(255).round().div(255)
