"""Bicubic upscaling the way the super-resolution literature does it (MATLAB's `imresize`)."""

import torch
import torch.nn.functional as F


def bicubic_upscale(images: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h * scale, w * scale) with Keys' cubic kernel, a = -0.5.

    torch's anti-aliased bicubic path uses a = -0.5 (MATLAB's and PIL's kernel); its plain path
    uses a = -0.75, which rings more.
    """
    return F.interpolate(
        images, scale_factor=float(scale), mode="bicubic", antialias=True, align_corners=False
    )
