"""NiNformer's mixer gating unit: an MLP-Mixer block that generates an element-wise gate.

`NiNformer: A Network in Network Transformer with Token Mixing Generated Gating Function`
    Abdullah and Aydin, arXiv 2403.02411, https://github.com/Abdullah-88/NiNformer

The unit replaces attention with a network in the network: an inner MLP-Mixer block (a
token-mixing MLP across all positions, then a channel MLP, each pre-norm residual) reads the
input and produces a gate that multiplies, element by element, a linear projection of the same
input: `proj(x) * mixer(x)`. The gate is dynamic (it depends on the whole input), unlike
MLP-Mixer's static token weights, at the cost of one extra projection.

The token-mixing MLP is built for a fixed grid of `grid_size` tokens (8 x 8 in the paper's
CIFAR setting). On any other map, the normalised input of that MLP is resampled bicubically to
the built grid and its output back to the map, so the unit works on any H, W >= 1; the residual
and every per-position layer stay at the map's own resolution.

Layout: NCHW in and out (tokens are the H x W positions).
"""

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, Mlp, to_2tuple
from timm.models import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = ["MixerBlock", "MixerGatingUnit"]


# a leaf for torch.fx: its resampling depends on the input size
@register_notrace_module
class MixerBlock(nn.Module):
    """MLP-Mixer block over a (B, dim, H, W) map: token MLP then channel MLP, pre-norm residual.

    Args:
        dim: Channels.
        grid_size: The (H, W) token grid the token MLP is built for.
        token_hidden: Hidden width of the token MLP.
        channel_hidden: Hidden width of the channel MLP.
        drop: Dropout inside both MLPs.
    """

    def __init__(
        self,
        dim: int,
        grid_size: int | tuple[int, int],
        token_hidden: int,
        channel_hidden: int,
        drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grid_size = to_2tuple(grid_size)
        self.norm1 = LayerNorm2d(dim, eps=1e-5, **dd)
        self.token_mlp = Mlp(self.grid_size[0] * self.grid_size[1], token_hidden, drop=drop, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-5, **dd)
        self.channel_mlp = Mlp(dim, channel_hidden, drop=drop, use_conv=True, **dd)

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The token MLP across all positions of each channel, on the built grid."""
        size = (x.shape[-2], x.shape[-1])
        grid = (self.grid_size[0], self.grid_size[1])
        if size != grid:
            x = F.interpolate(x, size=grid, mode="bicubic", align_corners=False)
        y = self.token_mlp(x.flatten(2)).reshape(x.shape)
        if size != grid:
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix_tokens(self.norm1(x))
        return x + self.channel_mlp(self.norm2(x))


class MixerGatingUnit(nn.Module):
    """`proj(x) * mixer(x)`: a 1x1 projection gated element-wise by an MLP-Mixer block.

    Args:
        dim: Channels in and out.
        grid_size: Token grid of the inner token MLP (8: the paper's 32x32 input, patch 4).
        token_hidden: Hidden width of the inner token MLP.
        channel_hidden: Hidden width of the inner channel MLP (default 2 x dim, as the paper).
        drop: Dropout inside the inner MLPs.
    """

    def __init__(
        self,
        dim: int,
        grid_size: int | tuple[int, int] = 8,
        token_hidden: int = 512,
        channel_hidden: int | None = None,
        drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        channel_hidden = channel_hidden or 2 * dim
        self.mixer = MixerBlock(dim, grid_size, token_hidden, channel_hidden, drop, **dd)
        self.proj = nn.Conv2d(dim, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.mixer(x)


register_token_mixer("ninformer_gating")(MixerGatingUnit)
