"""Raft token mixing: RaftMLP's vertical and horizontal token-mixing MLPs over channel rafts.

`RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?`
    Tatsunami and Taki, ACCV 2022, arXiv 2108.04384, https://github.com/okojoalg/raft-mlp

MLP-Mixer mixes all H x W tokens with one MLP per channel. RaftMLP splits that into a vertical
MLP (each column, along H) and a horizontal MLP (each row, along W), and makes them denser across
channels: the C channels form `C / r` rafts of `r` channels (channel `i * C / r + j` belongs to
raft `j`), and one MLP, shared by all rafts and all columns, mixes a raft's `r x H` values of a
column at once (`r x W` of a row for the horizontal MLP). Each of the two is a pre-norm residual
block (LayerNorm over channels, MLP with expansion `e`, GELU).

The MLPs' widths are fixed by the token grid they were built for (56, 28, 14, 7 at 224 input).
On any other grid, as the paper proposes, the map is resampled bicubically to the built grid
before the vertical and horizontal blocks and back to its own size after them. So at 32 px
input the token-mixing MLPs still run on the 56, 28, 14, 7 grids of 224 px: that is the
operator's own cost, and why RaftMLP trains about as slowly at 32 px as at 224 px.

The resampling is `F.interpolate`'s bicubic, applied as two small matrix products (bicubic
resizing is separable, one (out, in) matrix per axis): the same values, but its backward is a
matrix product too, where interpolate's CPU backward took a third of a 32 px training step.

Layout: NCHW in and out.
"""

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, Mlp, to_2tuple
from timm.models import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = ["RaftMixingBlock", "RaftTokenMixer", "bicubic_matrix", "resize_bicubic"]


def bicubic_matrix(
    in_size: int, out_size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(out_size, in_size): `F.interpolate`'s bicubic resizing of one axis, as a matrix.

    Interpolating the identity resizes each of its columns, the basis vectors; along the other
    axis the length stays 1, which bicubic leaves unchanged.
    """
    eye = torch.eye(in_size, device=device, dtype=dtype).view(in_size, 1, in_size, 1)
    columns = F.interpolate(eye, size=(out_size, 1), mode="bicubic", align_corners=False)
    return columns.view(in_size, out_size).t()


def resize_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.interpolate(x, size, mode="bicubic", align_corners=False)` as two matrix products."""
    rows = bicubic_matrix(x.shape[-2], size[0], x.device, x.dtype)
    cols = bicubic_matrix(x.shape[-1], size[1], x.device, x.dtype)
    return rows @ x @ cols.t()


class RaftMixingBlock(nn.Module):
    """`x + mix(norm(x))`, where `mix` runs one MLP over each raft's values along one axis.

    Args:
        dim: Channels, a multiple of `raft_size`.
        length: Positions along the mixed axis (the built grid's height or width).
        raft_size: Channels per raft, r.
        expansion: Hidden width of the MLP over its `r * length` inputs.
        vertical: Mix along H (each column) if True, along W (each row) if False.
        drop_path: Stochastic depth of the residual branch.
    """

    def __init__(
        self,
        dim: int,
        length: int,
        raft_size: int = 2,
        expansion: float = 2.0,
        vertical: bool = True,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if dim % raft_size:
            raise ValueError(f"dim={dim} must be a multiple of raft_size={raft_size}")
        self.raft_size = raft_size
        self.vertical = vertical
        width = raft_size * length
        self.norm = LayerNorm2d(dim, eps=1e-5, **dd)
        self.mlp = Mlp(width, int(width * expansion), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """The raft MLP alone (no norm, no residual)."""
        batch, channels, height, width = x.shape
        rafts = channels // self.raft_size
        x = x.reshape(batch, self.raft_size, rafts, height, width)
        if self.vertical:  # (B, rafts, W, r * H): one vector per raft and column
            y = self.mlp(x.permute(0, 2, 4, 1, 3).reshape(batch, rafts, width, -1))
            y = y.reshape(batch, rafts, width, self.raft_size, height).permute(0, 3, 1, 4, 2)
        else:  # (B, rafts, H, r * W): one vector per raft and row
            y = self.mlp(x.permute(0, 2, 3, 1, 4).reshape(batch, rafts, height, -1))
            y = y.reshape(batch, rafts, height, self.raft_size, width).permute(0, 3, 1, 2, 4)
        return y.reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mix(self.norm(x)))


# a leaf for torch.fx: its resampling depends on the input size
@register_notrace_module
class RaftTokenMixer(nn.Module):
    """The vertical then the horizontal raft-mixing block, on a grid of `grid_size` tokens.

    Args:
        dim: Channels in and out.
        grid_size: The (H, W) token grid the MLPs are built for; other maps are resampled to it.
        raft_size: Channels per raft.
        expansion: Hidden expansion of the token-mixing MLPs.
        drop_path: Stochastic depth of both blocks.
    """

    def __init__(
        self,
        dim: int,
        grid_size: int | tuple[int, int] = 14,
        raft_size: int = 2,
        expansion: float = 2.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grid_size = to_2tuple(grid_size)
        self.vertical = RaftMixingBlock(
            dim, self.grid_size[0], raft_size, expansion, True, drop_path, **dd
        )
        self.horizontal = RaftMixingBlock(
            dim, self.grid_size[1], raft_size, expansion, False, drop_path, **dd
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        grid = (self.grid_size[0], self.grid_size[1])
        if size != grid:
            x = resize_bicubic(x, grid)
        x = self.horizontal(self.vertical(x))
        if size != grid:
            x = resize_bicubic(x, size)
        return x


register_token_mixer("raft")(RaftTokenMixer)
