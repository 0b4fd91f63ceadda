"""FaViT: a four-stage PVT-style transformer whose attention is factorization self-attention.

`Factorization Vision Transformer: Modeling Long Range Dependency with Local Window Cost`
    Qin et al., arXiv 2312.08614, https://github.com/q2479036243/FaViT

Parameter counts at 224 with the 1000-class head, against the classification table of the
official repository (FaViT/README.md, "#Params (M)"; the paper's ImageNet table gives the same):

    favit_b0   3.43M   (table: 3.4M)
    favit_b1  12.96M   (table: 13M)

Our own implementation; the facts (overlapping patch embeddings 7x7/4 then 3x3/2, depths 2-2-6-2,
widths 32.. and 64.., heads 1-2-4-8, MLP ratios 8-6-4-4, spatial reduction 8-4-2-1, window 7,
Mix-FFN with a 3x3 depthwise conv, a LayerNorm at the end of every stage) follow the official
repository. Every layer works on NCHW maps; FaSA adapts to any input size (zoo/operators/favit.py).
"""

import math

import torch
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, trunc_normal_
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
)
from torch import nn

from zoo.operators.favit import FactorizationSelfAttention
from zoo.operators.mix_ffn import MixFfn

from ._hierarchical import NormHeadNet, stage_group_matcher

__all__ = ["FaViT"]


class FaViTBlock(nn.Module):
    """Pre-norm FaSA then pre-norm Mix-FFN, each with a residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        mlp_ratio: float,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.attn = FactorizationSelfAttention(dim, num_heads=num_heads, sr_ratio=sr_ratio, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.mlp = MixFfn(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FaViTStage(nn.Module):
    """Overlapping patch embedding, blocks, LayerNorm."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        num_heads: int,
        sr_ratio: int,
        mlp_ratio: float,
        patch_size: int,
        stride: int,
        drop_path_rates: list[float],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        self.downsample = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, patch_size, stride=stride, padding=patch_size // 2, **dd),
            LayerNorm2d(out_chs, eps=1e-5, **dd),
        )
        self.blocks = nn.Sequential(
            *[
                FaViTBlock(out_chs, num_heads, sr_ratio, mlp_ratio, drop_path_rates[i], **dd)
                for i in range(depth)
            ]
        )
        self.norm = LayerNorm2d(out_chs, eps=1e-6, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)


class FaViT(NormHeadNet):
    """Factorization Vision Transformer.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        num_heads: Heads of the window groups per stage.
        mlp_ratios: Mix-FFN expansion per stage.
        sr_ratios: FaSA spatial reduction (and coarse dilation) per stage.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 6, 2),
        dims: tuple[int, ...] = (64, 128, 256, 512),
        num_heads: tuple[int, ...] = (1, 2, 4, 8),
        mlp_ratios: tuple[float, ...] = (8, 6, 4, 4),
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
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
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                FaViTStage(
                    in_chans if i == 0 else dims[i - 1],
                    dims[i],
                    depth=depths[i],
                    num_heads=num_heads[i],
                    sr_ratio=sr_ratios[i],
                    mlp_ratio=mlp_ratios[i],
                    patch_size=7 if i == 0 else 3,
                    stride=4 if i == 0 else 2,
                    drop_path_rates=rates[i].tolist(),
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.Identity()  # every stage ends in its own norm
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        self.apply(_init_weights)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return stage_group_matcher(
            coarse, stem=r"^stages\.0\.downsample", tail=r"^stages\.(\d+)\.norm"
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x  # no stem: the first stage's downsample embeds the patches


def _init_weights(module: nn.Module) -> None:
    """The official initialisation: truncated normal linears, fan-out normal convolutions."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (fan_out // module.groups)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_favit(variant: str, pretrained: bool = False, **kwargs) -> FaViT:
    return build_model_with_cfg(
        FaViT,
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
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stages.0.downsample.0",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"favit_b0": _cfg(), "favit_b1": _cfg()})


@register_model
def favit_b0(pretrained: bool = False, **kwargs) -> FaViT:
    args = dict(depths=(2, 2, 6, 2), dims=(32, 64, 128, 256))
    return _create_favit("favit_b0", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def favit_b1(pretrained: bool = False, **kwargs) -> FaViT:
    args = dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512))
    return _create_favit("favit_b1", pretrained=pretrained, **dict(args, **kwargs))
