"""RaftMLP: a four-level MLP model with vertical/horizontal raft token mixing.

`RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?`
    Tatsunami and Taki, ACCV 2022, arXiv 2108.04384, https://github.com/okojoalg/raft-mlp

Parameter count at 224 with the 1000-class head, against the paper's ImageNet-1K comparison
table of MLP-based models (arXiv 2108.04384, "#Params"); the official code builds the same
9,868,768 parameters:

    raftmlp_s  9.87M   (table: 9.9M)

Our own implementation; the facts of RaftMLP-S (the official `imagenet-raft-mlp-cross-mlp-emb-s`
setting: four levels of depth 2-2-6-2 and width 64-128-256-512, cross-scale embeddings of
patch 4 with kernels 4 and 8, then patch 2 with kernels 2 and 4 (2 alone in the last level), raft
size 2, token-MLP expansion 2, channel-MLP expansion 4, one drop-path rate for every block, a
LayerNorm then average pooling before the classifier) follow the official repository (MIT
license). The token-mixing MLPs are built for the 224-input grids (56, 28, 14, 7); other inputs are
resampled to those grids around the token mixing, and a level's input is resized bicubically up
to a multiple of its patch size, both as in the official code (zoo/operators/raftmlp.py).
"""

import torch
import torch.nn.functional as F
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, Mlp
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
    register_notrace_module,
)
from torch import nn

from zoo.operators.raftmlp import RaftTokenMixer

from ._hierarchical import NormHeadNet, stage_group_matcher

__all__ = ["RaftMLP"]


# a leaf for torch.fx: its resizing depends on the input size
@register_notrace_module
class CrossScaleEmbedding(nn.Module):
    """Patches of several sizes around the same stride-`patch` grid, concatenated and projected.

    The official unfold-concat-linear is written as one conv per kernel size, summed (the same
    function and parameters, one bias). Inputs are first resized up to a multiple of the patch.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernels: tuple[int, ...],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.stride = min(kernels)
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(
                    in_chs, out_chs, k, self.stride, (k - self.stride) // 2, bias=i == 0, **dd
                )
                for i, k in enumerate(kernels)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if height % self.stride or width % self.stride:
            size = (-(-height // self.stride) * self.stride, -(-width // self.stride) * self.stride)
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        out = self.convs[0](x)
        for i, conv in enumerate(self.convs):
            if i > 0:
                out = out + conv(x)
        return out


class RaftMLPBlock(nn.Module):
    """Raft token mixing (vertical then horizontal), then a pre-norm residual channel MLP."""

    def __init__(
        self,
        dim: int,
        grid_size: int,
        raft_size: int,
        token_expansion: float,
        channel_expansion: float,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.token_mixer = RaftTokenMixer(
            dim, grid_size, raft_size, token_expansion, drop_path, **dd
        )
        self.norm = LayerNorm2d(dim, eps=1e-5, **dd)
        self.mlp = Mlp(dim, int(dim * channel_expansion), use_conv=True, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.drop_path(self.mlp(self.norm(x)))


class RaftMLPStage(nn.Module):
    """A level: cross-scale embedding, then blocks on its token grid."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        kernels: tuple[int, ...],
        grid_size: int,
        raft_size: int,
        token_expansion: float,
        channel_expansion: float,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        self.downsample = CrossScaleEmbedding(in_chs, out_chs, kernels, **dd)
        self.blocks = nn.Sequential(
            *[
                RaftMLPBlock(
                    out_chs,
                    grid_size,
                    raft_size,
                    token_expansion,
                    channel_expansion,
                    drop_path,
                    **dd,
                )
                for _ in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class RaftMLP(NormHeadNet):
    """RaftMLP with cross-scale embeddings (the paper's final models).

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per level.
        dims: Channels per level.
        embed_kernels: Kernel sizes of each level's cross-scale embedding (the smallest is its
            patch size and stride).
        raft_size: Channels per raft.
        token_expansion: Hidden expansion of the token-mixing MLPs.
        channel_expansion: Hidden expansion of the channel MLPs.
        img_size: Input size the token-mixing MLPs are built for.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth of every block (constant, as the official code).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 6, 2),
        dims: tuple[int, ...] = (64, 128, 256, 512),
        embed_kernels: tuple[tuple[int, ...], ...] = ((4, 8), (2, 4), (2, 4), (2,)),
        raft_size: int = 2,
        token_expansion: float = 2.0,
        channel_expansion: float = 4.0,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        stages, self.feature_info = [], []
        grid, reduction, in_chs = img_size, 1, in_chans
        for i, (depth, dim, kernels) in enumerate(zip(depths, dims, embed_kernels)):
            patch = min(kernels)
            grid, reduction = -(-grid // patch), reduction * patch
            stages.append(
                RaftMLPStage(
                    in_chs,
                    dim,
                    depth,
                    kernels,
                    grid,
                    raft_size,
                    token_expansion,
                    channel_expansion,
                    drop_path_rate,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"stages.{i}"))
            in_chs = dim
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = LayerNorm2d(self.num_features, eps=1e-5, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return stage_group_matcher(coarse, stem=r"^stages\.0\.downsample", tail=r"^norm")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x  # no stem: the first stage's downsample embeds the patches


def _create_raftmlp(variant: str, pretrained: bool = False, **kwargs) -> RaftMLP:
    return build_model_with_cfg(
        RaftMLP,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": ("stages.0.downsample.convs.0", "stages.0.downsample.convs.1"),
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"raftmlp_s": _cfg()})


@register_model
def raftmlp_s(pretrained: bool = False, **kwargs) -> RaftMLP:
    args = dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512))
    return _create_raftmlp("raftmlp_s", pretrained=pretrained, **dict(args, **kwargs))
