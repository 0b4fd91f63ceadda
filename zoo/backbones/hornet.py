"""HorNet: ConvNeXt's macro-architecture with recursive gated convolutions as spatial mixers.

`HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions`
    Rao et al., NeurIPS 2022, arXiv 2207.14284, https://github.com/raoyongming/HorNet

Parameter counts at 224 with the 1000-class head, against the official model-zoo table
(README of the official repository; Table 1 of the paper rounds the same figures):

    hornet_tiny_7x7   22.41M   (table: 22M)
    hornet_tiny_gf    22.99M   (table: 23M)
    hornet_small_7x7  49.53M   (table: 50M)

Our own implementation; the facts (depths, widths, orders 2-5 per stage, scale 1/3, global-filter
sizes 14x8 and 7x4 in stages 3 and 4) follow the official repository (MIT license).
"""

from functools import partial

import torch
from timm.layers import (
    DropPath,
    LayerNorm,
    LayerNorm2d,
    NormMlpClassifierHead,
    trunc_normal_,
)
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from torch import nn

from zoo.operators.gnconv import GnConv

from ._hierarchical import HierarchicalNet

__all__ = ["HorNet"]


class HorNetBlock(nn.Module):
    """g^n Conv spatial mixing then an MLP, each pre-normed with layer scale (a ConvNeXt block)."""

    def __init__(
        self,
        dim: int,
        order: int,
        scale: float = 1 / 3,
        global_filter: bool = False,
        filter_size: tuple[int, int] = (14, 8),
        mlp_ratio: float = 4.0,
        ls_init_value: float = 1e-6,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.gnconv = GnConv(
            dim,
            order=order,
            scale=scale,
            global_filter=global_filter,
            filter_size=filter_size,
            **dd,
        )
        self.gamma1 = nn.Parameter(ls_init_value * torch.ones(dim, 1, 1, **dd))
        self.norm2 = LayerNorm(dim, eps=1e-6, **dd)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden, **dd), nn.GELU(), nn.Linear(hidden, dim, **dd)
        )
        self.gamma2 = nn.Parameter(ls_init_value * torch.ones(dim, **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.gamma1 * self.gnconv(self.norm1(x)))
        # the MLP runs channels-last, where nn.Linear is the 1x1 conv
        y = self.gamma2 * self.mlp(self.norm2(x.permute(0, 2, 3, 1)))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class HorNetStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        order: int,
        downsample: bool,
        global_filter: bool = False,
        filter_size: tuple[int, int] = (14, 8),
        drop_path_rates: list[float] | None = None,
        ls_init_value: float = 1e-6,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if downsample:
            self.downsample = nn.Sequential(
                LayerNorm2d(in_chs, eps=1e-6, **dd), nn.Conv2d(in_chs, out_chs, 2, stride=2, **dd)
            )
        else:
            self.downsample = nn.Identity()
        drop_path_rates = drop_path_rates or [0.0] * depth
        self.blocks = nn.Sequential(
            *[
                HorNetBlock(
                    out_chs,
                    order=order,
                    global_filter=global_filter,
                    filter_size=filter_size,
                    ls_init_value=ls_init_value,
                    drop_path=drop_path_rates[i],
                    **dd,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class HorNet(HierarchicalNet):
    """HorNet.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        orders: g^n Conv order per stage.
        global_filter: Per stage, use the global/local filter instead of the 7x7 depthwise conv.
        filter_sizes: Per stage, the (h, w) rFFT grid of the global filter at 224 input.
        ls_init_value: Layer-scale initial value.
        head_init_scale: Scale on the initial classifier weights.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 3, 18, 2),
        dims: tuple[int, ...] = (64, 128, 256, 512),
        orders: tuple[int, ...] = (2, 3, 4, 5),
        global_filter: tuple[bool, ...] = (False, False, False, False),
        filter_sizes: tuple[tuple[int, int], ...] = ((56, 29), (28, 15), (14, 8), (7, 4)),
        ls_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
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
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], 4, stride=4, **dd), LayerNorm2d(dims[0], eps=1e-6, **dd)
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                HorNetStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth=depths[i],
                    order=orders[i],
                    downsample=i > 0,
                    global_filter=global_filter[i],
                    filter_size=filter_sizes[i],
                    drop_path_rates=rates[i].tolist(),
                    ls_init_value=ls_init_value,
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = dims[-1]
        # pool -> norm -> fc, as in the paper (and ConvNeXt)
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        named_apply(partial(_init_weights, head_init_scale=head_init_scale), self)


def _init_weights(module: nn.Module, name: str = "", head_init_scale: float = 1.0) -> None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        if name.startswith("head.fc"):
            module.weight.data.mul_(head_init_scale)
            module.bias.data.mul_(head_init_scale)


def _create_hornet(variant: str, pretrained: bool = False, **kwargs) -> HorNet:
    return build_model_with_cfg(
        HorNet,
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
        "first_conv": "stem.0",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "hornet_tiny_7x7": _cfg(),
        "hornet_tiny_gf": _cfg(),
        "hornet_small_7x7": _cfg(),
    }
)

_GF_STAGES = dict(global_filter=(False, False, True, True))


@register_model
def hornet_tiny_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    args = dict(depths=(2, 3, 18, 2), dims=(64, 128, 256, 512))
    return _create_hornet("hornet_tiny_7x7", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_tiny_gf(pretrained: bool = False, **kwargs) -> HorNet:
    args = dict(depths=(2, 3, 18, 2), dims=(64, 128, 256, 512), **_GF_STAGES)
    return _create_hornet("hornet_tiny_gf", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_small_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    args = dict(depths=(2, 3, 18, 2), dims=(96, 192, 384, 768))
    return _create_hornet("hornet_small_7x7", pretrained=pretrained, **dict(args, **kwargs))
