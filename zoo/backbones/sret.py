"""SReT: a three-stage vision transformer whose blocks are applied recursively with shared weights.

`Sliced Recursive Transformer`
    Shen, Liu and Xing, ECCV 2022, arXiv 2111.05297, https://github.com/szq0214/SReT

Recursion: each transformer block of a stage is applied twice with the same weights, and each
application is followed by its own small non-linear projection (NLL, a pre-norm MLP of ratio 1
with two learnable scalar coefficients), so that depth grows without the block's parameters.
Slicing: the first application attends within G contiguous groups of tokens (8, 4, 1 per stage),
the recursion within fewer, randomly permuted groups (2, 1, 1), trading a little accuracy for
10-30% fewer FLOPs. `sret_t_wo_slice` is the same network with global attention everywhere.

Parameter counts at 224 with the 1000-class head, against the table of the official repository
(README, "#params"; the paper's Table of ImageNet results gives the same 4.8M):

    sret_t           4.76M   (table: 4.8M)
    sret_t_wo_slice  4.76M   (table: 4.8M)

Our own implementation; the facts (a 3-conv stride-8 stem with BN + ReLU, a learned position
embedding on the 28x28 grid, stage widths 64-128-256 with heads 2-4-8, depths 4-10-6 of which
2-5-3 blocks are distinct, MLP ratio 3.6, scalar coefficients on every residual branch, stride-2
depthwise-grouped convolutions between stages, average pooling then LayerNorm) follow the
official repository. Adaptations, documented: the position embedding is resized bicubically to
the actual token grid; a group count that does not divide the tokens falls to the largest divisor
below it; at inference the recursion's groups are strided (token i to group i mod G), a fixed
instance of the random grouping used in training, so that outputs are deterministic (the official
code permutes at random at inference too).
"""

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import (
    DropPath,
    LayerNorm2d,
    Mlp,
    NormMlpClassifierHead,
    trunc_normal_,
)
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
    register_notrace_function,
    register_notrace_module,
)
from torch import nn

from ._hierarchical import HierarchicalNet

__all__ = ["SReT"]


def equal_group_count(num_tokens: int, groups: int) -> int:
    """The largest group count <= `groups` that splits `num_tokens` into equal groups."""
    groups = max(min(groups, num_tokens), 1)
    while num_tokens % groups:
        groups -= 1
    return groups


# a leaf for torch.fx: its grouping depends on the number of tokens
@register_notrace_module
class SlicedAttention(nn.Module):
    """Multi-head self-attention within equal groups of tokens.

    `groups` contiguous groups of the raster token order, or, with `shuffle`, groups drawn from a
    random permutation of the tokens in training (strided groups at inference).
    """

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, **dd)
        self.proj = nn.Linear(dim, dim, **dd)

    def forward(self, x: torch.Tensor, groups: int = 1, shuffle: bool = False) -> torch.Tensor:
        batch, num_tokens, dim = x.shape
        groups = equal_group_count(num_tokens, groups)
        shuffle = shuffle and groups > 1
        order = torch.empty(0, dtype=torch.long, device=x.device)
        if shuffle and self.training:
            order = torch.randperm(num_tokens, device=x.device)
            x = x[:, order]
        size = num_tokens // groups
        if shuffle and not self.training:
            x = x.reshape(batch, size, groups, dim).transpose(1, 2)  # token i -> group i % G
        else:
            x = x.reshape(batch, groups, size, dim)
        qkv = self.qkv(x).reshape(batch, groups, size, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, G, heads, size, head_dim)
        x = (
            F.scaled_dot_product_attention(q, k, v)
            .transpose(2, 3)
            .reshape(batch, groups, size, dim)
        )
        if shuffle and not self.training:
            x = x.transpose(1, 2)
        x = x.reshape(batch, num_tokens, dim)
        if shuffle and self.training:
            x = x[:, torch.argsort(order)]
        return self.proj(x)


class RecursiveTransformerBlock(nn.Module):
    """Pre-norm attention and MLP, each residual with learnable scalars on both terms."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.attn = SlicedAttention(dim, num_heads, **dd)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **dd)
        self.coef_x1 = nn.Parameter(torch.ones(1, **dd))
        self.coef_attn = nn.Parameter(torch.ones(1, **dd))
        self.coef_x2 = nn.Parameter(torch.ones(1, **dd))
        self.coef_mlp = nn.Parameter(torch.ones(1, **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, groups: int = 1, shuffle: bool = False) -> torch.Tensor:
        attn = self.attn(self.norm1(x), groups, shuffle)
        x = self.coef_x1 * x + self.coef_attn * self.drop_path(attn)
        return self.coef_x2 * x + self.coef_mlp * self.drop_path(self.mlp(self.norm2(x)))


class NonLinearProjection(nn.Module):
    """The NLL after each recursion: `a * x + b * mlp(norm(x))`, MLP of ratio `mlp_ratio`."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **dd)
        self.coef_x = nn.Parameter(torch.ones(1, **dd))
        self.coef_mlp = nn.Parameter(torch.ones(1, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coef_x * x + self.coef_mlp * self.mlp(self.norm(x))


class RecursiveUnit(nn.Module):
    """One block applied `len(projections)` times with the same weights, each time then an NLL.

    The first application slices attention into `groups` contiguous groups, the recursions into
    `recursive_groups` shuffled ones.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        recursions: int,
        groups: int,
        recursive_groups: int,
        mlp_ratio: float,
        nll_mlp_ratio: float,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.groups = groups
        self.recursive_groups = recursive_groups
        self.block = RecursiveTransformerBlock(dim, num_heads, mlp_ratio, drop_path, **dd)
        self.projections = nn.ModuleList(
            [NonLinearProjection(dim, nll_mlp_ratio, **dd) for _ in range(recursions)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, projection in enumerate(self.projections):
            if i == 0:
                x = self.block(x, self.groups, False)
            else:
                x = self.block(x, self.recursive_groups, True)
            x = projection(x)
        return x


@register_notrace_function
def resized_pos_embed(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The (1, C, h, w) position embedding resampled bicubically to (height, width)."""
    if pos_embed.shape[-2] == height and pos_embed.shape[-1] == width:
        return pos_embed
    return F.interpolate(pos_embed, size=(height, width), mode="bicubic", align_corners=False)


# a leaf for torch.fx whichever module's forward is traced: timm's registration above only
# patches the globals of the traced root's module, and `SReT.forward` lives in _hierarchical.py
torch.fx.wrap("resized_pos_embed")


class SReTStage(nn.Module):
    """Optional stride-2 depthwise-grouped conv, then recursive units over the flattened tokens."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        num_heads: int,
        units: int,
        recursions: int,
        groups: int,
        recursive_groups: int,
        mlp_ratio: float,
        nll_mlp_ratio: float,
        downsample: bool,
        drop_path_rates: list[float],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if downsample:
            self.downsample = nn.Conv2d(in_chs, out_chs, 3, 2, 1, groups=in_chs, **dd)
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *[
                RecursiveUnit(
                    out_chs,
                    num_heads,
                    recursions,
                    groups,
                    recursive_groups,
                    mlp_ratio,
                    nll_mlp_ratio,
                    drop_path_rates[i],
                    **dd,
                )
                for i in range(units)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class SReT(HierarchicalNet):
    """Sliced Recursive Transformer.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        dims: Channels per stage.
        num_heads: Attention heads per stage.
        depths: Block applications per stage (distinct blocks x recursions).
        recursions: Applications of each distinct block.
        groups: Attention groups of a block's first application, per stage.
        recursive_groups: Attention groups of its recursions, per stage.
        mlp_ratio: Expansion of the blocks' MLPs.
        nll_mlp_ratio: Expansion of the NLLs' MLPs.
        pos_embed_grid: Side of the learned position-embedding grid (224 / 8).
        drop_rate: Dropout of the position embedding and before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over the distinct blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        dims: tuple[int, ...] = (64, 128, 256),
        num_heads: tuple[int, ...] = (2, 4, 8),
        depths: tuple[int, ...] = (4, 10, 6),
        recursions: int = 2,
        groups: tuple[int, ...] = (8, 4, 1),
        recursive_groups: tuple[int, ...] = (2, 1, 1),
        mlp_ratio: float = 3.6,
        nll_mlp_ratio: float = 1.0,
        pos_embed_grid: int = 28,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if any(depth % recursions for depth in depths):
            raise ValueError(f"depths {depths} must be multiples of recursions={recursions}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        stem_layers = []
        for cin, cout in [(in_chans, dims[0] // 2), (dims[0] // 2, dims[0]), (dims[0], dims[0])]:
            stem_layers += [
                nn.Conv2d(cin, cout, 3, 2, 1, **dd),
                nn.BatchNorm2d(cout, **dd),
                nn.ReLU(inplace=True),
            ]
        self.stem = nn.Sequential(*stem_layers)
        self.pos_embed = nn.Parameter(torch.zeros(1, dims[0], pos_embed_grid, pos_embed_grid, **dd))
        self.pos_drop = nn.Dropout(drop_rate)
        units = [depth // recursions for depth in depths]
        # as the official code: rate * j / depth for the j-th application, and a stage's k-th
        # distinct block takes the k-th rate of its stage
        rates = torch.linspace(0, drop_path_rate, sum(depths) + 1, device="cpu")[:-1]
        rates = rates.split(list(depths))
        self.stages = nn.Sequential(
            *[
                SReTStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    num_heads[i],
                    units[i],
                    recursions,
                    groups[i],
                    recursive_groups[i],
                    mlp_ratio,
                    nll_mlp_ratio,
                    downsample=i > 0,
                    drop_path_rates=rates[i][: units[i]].tolist(),
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=8 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = dims[-1]
        # pool -> LayerNorm -> fc, as in the official code
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        trunc_normal_(self.pos_embed, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem|^pos_embed",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)],
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, then the position embedding (resized to the token grid)."""
        x = self.stem(x)
        return self.pos_drop(x + resized_pos_embed(self.pos_embed, x.shape[-2], x.shape[-1]))


def _create_sret(variant: str, pretrained: bool = False, **kwargs) -> SReT:
    return build_model_with_cfg(
        SReT,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2), flatten_sequential=True),
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
        "first_conv": "stem.0",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"sret_t": _cfg(), "sret_t_wo_slice": _cfg()})


@register_model
def sret_t(pretrained: bool = False, **kwargs) -> SReT:
    args = dict(dims=(64, 128, 256), groups=(8, 4, 1), recursive_groups=(2, 1, 1))
    return _create_sret("sret_t", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def sret_t_wo_slice(pretrained: bool = False, **kwargs) -> SReT:
    args = dict(dims=(64, 128, 256), groups=(1, 1, 1), recursive_groups=(1, 1, 1))
    return _create_sret("sret_t_wo_slice", pretrained=pretrained, **dict(args, **kwargs))
