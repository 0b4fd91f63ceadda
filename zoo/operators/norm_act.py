"""Normalisation and activation choices for the backbones that build their own blocks.

`Evolving Normalization-Activation Layers` (EvoNorm), Liu et al., NeurIPS 2020, arXiv 2004.02967
`MetaFormer Baselines for Vision` (StarReLU), Yu et al., TPAMI 2024, arXiv 2210.13452

The layers themselves are timm's; this module only names them, so that a config can pick one:
`backbone=metaformer_grid +backbone.kwargs.norm=evonorm_s0 +backbone.kwargs.act=gelu`.
EvoNorm layers normalise *and* apply their own non-linearity, as the paper designs them.
"""

from collections.abc import Callable

from timm.layers import EvoNorm2dB0, EvoNorm2dS0, LayerNorm2d
from timm.models.metaformer import GroupNorm1NoBias, LayerNorm2dNoBias, SquaredReLU, StarReLU
from torch import nn

__all__ = ["ACT_LAYERS", "NORM_LAYERS", "get_act_layer", "get_norm_layer"]

NORM_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "groupnorm1": GroupNorm1NoBias,  # PoolFormerV2's: one group over (C, H, W), no bias
    "layernorm2d": LayerNorm2d,
    "layernorm2d_nobias": LayerNorm2dNoBias,
    "batchnorm": nn.BatchNorm2d,
    "evonorm_b0": EvoNorm2dB0,
    "evonorm_s0": EvoNorm2dS0,
}

ACT_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "starrelu": StarReLU,
    "squared_relu": SquaredReLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


def _lookup(table: dict, kind: str, name: str) -> Callable[..., nn.Module]:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


def get_norm_layer(name: str) -> Callable[..., nn.Module]:
    """The norm layer class called `name` (see NORM_LAYERS)."""
    return _lookup(NORM_LAYERS, "norm layer", name)


def get_act_layer(name: str) -> Callable[..., nn.Module]:
    """The activation class called `name` (see ACT_LAYERS)."""
    return _lookup(ACT_LAYERS, "activation", name)
