"""The basic token mixers of the MetaFormer baselines, for the operator grid.

`MetaFormer Baselines for Vision`
    Yu et al., TPAMI 2024, arXiv 2210.13452, https://github.com/sail-sg/metaformer

- `identity`: no token mixing at all (IdentityFormer); the MetaFormer's lower bound.
- `random`: a frozen random token-mixing matrix (RandFormer): every output token is a fixed
  convex combination of all input tokens, rows drawn as `softmax(uniform noise)`.
- `pooling`: PoolFormer's `avgpool3x3(x) - x` (timm's layer).
- `sepconv`: ConvFormer's inverted separable convolution, 1x1 -> StarReLU -> 7x7 depthwise ->
  1x1 (timm's layer, which already works on NCHW).

Layout: NCHW in and out.
"""

import torch
import torch.nn.functional as F
from timm.models import register_notrace_module
from timm.models.metaformer import Pooling, SepConv
from torch import nn

from .registry import register_token_mixer

__all__ = ["PoolingMixer", "RandomMixing", "resize_mixing_matrix"]

register_token_mixer("identity")(nn.Identity)
register_token_mixer("sepconv")(SepConv)


@register_token_mixer("pooling")
class PoolingMixer(Pooling):
    """PoolFormer's pooling mixer, built from `dim` like every mixer of the registry."""

    def __init__(self, dim: int, pool_size: int = 3):
        super().__init__(pool_size=pool_size)


def resize_mixing_matrix(matrix: torch.Tensor, grid: int, size: tuple[int, int]) -> torch.Tensor:
    """Resample a `(grid^2, grid^2)` token-mixing matrix to the tokens of an `H x W` map.

    The matrix is a function of two positions (output, input), each on the `grid x grid` map; both
    are resampled bilinearly, then every row is renormalised to sum to one, so that each output
    token stays a convex combination of the input tokens.
    """
    height, width = size
    tokens = height * width
    # input positions: one image per output token
    matrix = F.interpolate(
        matrix.reshape(-1, 1, grid, grid), size=size, mode="bilinear", align_corners=False
    )
    # output positions: one image per input token
    matrix = matrix.reshape(grid * grid, tokens).t().reshape(tokens, 1, grid, grid)
    matrix = F.interpolate(matrix, size=size, mode="bilinear", align_corners=False)
    matrix = matrix.reshape(tokens, tokens).t()
    return matrix / matrix.sum(dim=-1, keepdim=True)


# a leaf for torch.fx: the matrix is resampled only when the map size differs from its grid
@register_notrace_module
@register_token_mixer("random")
class RandomMixing(nn.Module):
    """RandFormer's mixer: `y[:, :, m] = sum_n R[m, n] x[:, :, n]` over the flattened tokens.

    `R` is drawn once, as `softmax` over rows of uniform noise, for a `grid_size x grid_size` map
    (the size of the stage at the 224 input) and never trained. It is a buffer, not a parameter:
    it is saved with the weights, and the paper counts it apart from the trainable parameters.
    On a map of another size, `R` is resampled bilinearly and its rows renormalised
    (`resize_mixing_matrix`), so that one model runs on any input size with the same mixing.

    Args:
        dim: Channels (the mixing is the same for all of them).
        grid_size: Side of the token grid that the random matrix is drawn for.
        proj_drop: Dropout on the output.
    """

    def __init__(
        self,
        dim: int,
        grid_size: int = 14,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.grid_size = grid_size
        tokens = grid_size * grid_size
        noise = torch.rand(tokens, tokens, device=device, dtype=dtype)
        self.register_buffer("random_matrix", torch.softmax(noise, dim=-1))
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        matrix = self.random_matrix
        if height != self.grid_size or width != self.grid_size:
            matrix = resize_mixing_matrix(matrix, self.grid_size, (height, width))
        y = x.reshape(batch, channels, height * width) @ matrix.t().to(x.dtype)
        return self.proj_drop(y.reshape(batch, channels, height, width))
