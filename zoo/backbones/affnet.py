"""AFFNet: a MobileViT-style hybrid whose global token mixer is adaptive frequency filtering.

`Adaptive Frequency Filters As Efficient Global Token Mixers`
    Huang et al., ICCV 2023, arXiv 2307.14008,
    https://github.com/microsoft/TokenMixers (folder `Adaptive Frequency Filters`)

Layout (the official `affnet` configuration): a 3x3 stride-2 stem, two stages of MobileNetV2
inverted residuals, then three stages that each open with a stride-2 inverted residual and hold
one AFF block. An AFF block is MobileViT's block without the unfolding into patches: a stack of
AFF transformer blocks (norm -> inverted-residual FFN -> norm -> AFF token mixer, residual), a
norm, a 1x1 projection, and a 1x1 fusion of the block's input with its output. A 1x1 expansion
to min(4 C, 960) channels feeds the classifier.

Parameter counts at 224 with the 1000-class head, against the official results table (README of
the official repository, #params; the paper's ImageNet-1K table gives the same figures):

    affnet_et   1.436M   (table: 1.4M)
    affnet_t    2.654M   (table: 2.6M)
    affnet      5.569M   (table: 5.5M)

Our counts equal those of the official model parameter for parameter. The table's figures are the
official profiler's sum (1.428M, 2.643M, 5.551M), which leaves out the two norms of every AFF
transformer block and the biases of its mask network, cut to one decimal; with those left out, ours
give the table's figures too.

The variants are the official configuration's modes `xx_small` (ET), `x_small` (T) and `small`,
matched by these counts and by the MACs the official profiler gives at 256 (0.36G, 0.79G, 1.46G;
table: 0.4G, 0.8G, 1.5G).

The released training configs are not in the repository (they sit beside the weights). We take
BatchNorm and SiLU (`swish`) in the convolutions and the mask network from the MobileViT configs of
cvnets, on which the code is built, and the one-group GroupNorm (`layer_norm_2d`) of the AFF blocks
from the code's own default. None of these choices changes a parameter count.

Our own implementation; the facts follow the official repository (MIT license).
"""

import torch
from timm.layers import ClassifierHead, ConvNormAct, DropPath, GroupNorm1, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

from zoo.backbones._hierarchical import ConvHeadNet
from zoo.operators.aff import AdaptiveFrequencyFilter

__all__ = ["AffNet"]


class AffTransformerBlock(nn.Module):
    """norm -> inverted-residual FFN -> norm -> AFF, in one residual branch (the official order)."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 2.0,
        act_layer: type[nn.Module] = nn.SiLU,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = GroupNorm1(dim, **dd)
        self.mlp = InvertedResidual(dim, dim, exp_ratio=mlp_ratio, act_layer=act_layer, **dd)
        self.norm2 = GroupNorm1(dim, **dd)
        self.token_mixer = AdaptiveFrequencyFilter(dim, act_layer=act_layer, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.token_mixer(self.norm2(self.mlp(self.norm1(x)))))


class AffBlock(nn.Module):
    """AFF transformer blocks on the full-resolution map, then projection and local-global fusion."""

    def __init__(
        self,
        dim: int,
        depth: int,
        mlp_ratio: float = 2.0,
        fuse: bool = True,
        act_layer: type[nn.Module] = nn.SiLU,
        drop_path_rates: list[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        drop_path_rates = drop_path_rates or [0.0] * depth
        self.transformer = nn.Sequential(
            *[
                AffTransformerBlock(
                    dim,
                    mlp_ratio=mlp_ratio,
                    act_layer=act_layer,
                    drop_path=drop_path_rates[i],
                    **dd,
                )
                for i in range(depth)
            ]
        )
        self.norm = GroupNorm1(dim, **dd)
        self.conv_proj = ConvNormAct(dim, dim, 1, apply_act=False, **dd)
        self.conv_fusion = ConvNormAct(2 * dim, dim, 1, act_layer=act_layer, **dd) if fuse else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_proj(self.norm(self.transformer(x)))
        if self.conv_fusion is not None:
            y = self.conv_fusion(torch.cat((x, y), dim=1))
        return y


class AffNetStage(nn.Module):
    """Inverted residuals (the first one strided), optionally followed by one AFF block."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        num_mv2: int,
        exp_ratio: float,
        aff_depth: int = 0,
        mlp_ratio: float = 2.0,
        act_layer: type[nn.Module] = nn.SiLU,
        drop_path_rates: list[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        blocks: list[nn.Module] = [
            InvertedResidual(
                in_chs if i == 0 else out_chs,
                out_chs,
                stride=stride if i == 0 else 1,
                exp_ratio=exp_ratio,
                act_layer=act_layer,
                **dd,
            )
            for i in range(num_mv2)
        ]
        if aff_depth:
            blocks.append(
                AffBlock(
                    out_chs,
                    aff_depth,
                    mlp_ratio=mlp_ratio,
                    act_layer=act_layer,
                    drop_path_rates=drop_path_rates,
                    **dd,
                )
            )
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class AffNet(ConvHeadNet):
    """AFFNet.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        stem_chs: Channels of the stride-2 stem conv.
        dims: Channels per stage.
        depths: Per stage, inverted residuals for the first two (MobileNetV2) stages and AFF
            transformer blocks for the others (which also open with one strided inverted residual).
        num_mv2_stages: How many leading stages are MobileNetV2 only.
        exp_ratio: Expansion of the stages' inverted residuals.
        mlp_ratio: Expansion of the inverted-residual FFN inside the AFF transformer blocks.
        final_exp_ratio: Expansion of the last 1x1 conv, capped at `max_final_chs`.
        max_final_chs: Cap on the channels of the last 1x1 conv.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth over the AFF transformer blocks, increasing linearly.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        stem_chs: int = 16,
        dims: tuple[int, ...] = (32, 64, 128, 256, 320),
        depths: tuple[int, ...] = (1, 3, 2, 4, 3),
        num_mv2_stages: int = 2,
        exp_ratio: float = 4.0,
        mlp_ratio: float = 2.0,
        final_exp_ratio: int = 4,
        max_final_chs: int = 960,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        act_layer = nn.SiLU
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, act_layer=act_layer, **dd)
        aff_depths = list(depths[num_mv2_stages:])
        rates = torch.linspace(0, drop_path_rate, sum(aff_depths), device="cpu").split(aff_depths)
        stages, in_chs, reduction = [], stem_chs, 2
        self.feature_info = []
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            is_mv2 = i < num_mv2_stages
            stride = 1 if i == 0 else 2
            stages.append(
                AffNetStage(
                    in_chs,
                    dim,
                    stride=stride,
                    num_mv2=depth if is_mv2 else 1,
                    exp_ratio=exp_ratio,
                    aff_depth=0 if is_mv2 else depth,
                    mlp_ratio=mlp_ratio,
                    act_layer=act_layer,
                    drop_path_rates=None if is_mv2 else rates[i - num_mv2_stages].tolist(),
                    **dd,
                )
            )
            in_chs, reduction = dim, reduction * stride
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = min(final_exp_ratio * dims[-1], max_final_chs)
        self.conv_head = ConvNormAct(dims[-1], self.num_features, 1, act_layer=act_layer, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        self.head_hidden_size = self.head.num_features
        self.apply(_init_weights)


def _init_weights(module: nn.Module) -> None:
    # cvnets' defaults: Kaiming-normal convs, truncated-normal classifier, zero biases
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_affnet(variant: str, pretrained: bool = False, **kwargs) -> AffNet:
    # five stages, at strides 2 to 32: dense tasks get the four from stride 4, as other backbones
    return build_model_with_cfg(
        AffNet,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(1, 2, 3, 4), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 256, 256),
        "pool_size": (8, 8),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        # cvnets feeds images in [0, 1] without mean/std normalisation
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "first_conv": "stem.conv",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "affnet_et": _cfg(),
        "affnet_t": _cfg(),
        "affnet": _cfg(),
    }
)


@register_model
def affnet_et(pretrained: bool = False, **kwargs) -> AffNet:
    args = dict(dims=(32, 48, 64, 104, 144), depths=(1, 3, 2, 4, 3), exp_ratio=2.0)
    return _create_affnet("affnet_et", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def affnet_t(pretrained: bool = False, **kwargs) -> AffNet:
    args = dict(dims=(32, 48, 96, 160, 192), depths=(1, 3, 2, 4, 3), exp_ratio=4.0)
    return _create_affnet("affnet_t", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def affnet(pretrained: bool = False, **kwargs) -> AffNet:
    args = dict(dims=(32, 64, 128, 256, 320), depths=(1, 3, 2, 4, 3), exp_ratio=4.0)
    return _create_affnet("affnet", pretrained=pretrained, **dict(args, **kwargs))
