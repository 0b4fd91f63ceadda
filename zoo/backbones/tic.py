"""TiC: a hierarchical vision transformer whose only token mixer is MSA-Conv.

`TiC: Exploring Vision Transformer in Convolution`
    Zhang, Wang, Bian & Xiong, 2023, arXiv 2310.04134, https://github.com/zs670980918/MSA-Conv

Our design, following the paper's description (its abstract; the released code holds the
operator only, no model): a conv stem to 1/4, four stages of pre-norm transformer blocks whose
attention is MSA-Conv (`zoo.operators.msa_conv`, 3x3 windows, heads of 32 channels, a standard
3x3 projection conv), 3x3 stride-2 conv transitions, and a pool-norm-linear head. No position
embedding anywhere, so any input size works unchanged. The paper's two capacity enhancing
strategies, as we realise them:

- Multi-Directional Cyclic Shift: in every second block the mixer's input channels are split in
  four groups, rolled (cyclically) by a quarter of the map up, down, left and right. The 1x1
  query/key/value projection then mixes, at every pixel, features from four tokens a quarter
  of the map away: long-distance connections at no cost.
- Inter-Pooling: keys and values are 3x3 average-pooled before the attention window, so each
  3x3 window summarises a 5x5 area and the effective receptive field grows.

There is no paper table to match; our variant's parameter count (224 input, 1000 classes):

    tic_tiny   21.29M   (depths 2-2-6-2, widths 64-128-256-512, MLP ratio 4)
"""

from functools import partial

import torch
from timm.layers import (
    DropPath,
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

from zoo.operators.msa_conv import MSAConv2d

from ._hierarchical import HierarchicalNet

__all__ = ["TiC"]


def cyclic_shift(x: torch.Tensor) -> torch.Tensor:
    """Roll four channel groups by a quarter of the map: up, down, left, right."""
    height, width = x.shape[-2], x.shape[-1]
    up, down, left, right = x.tensor_split(4, dim=1)
    return torch.cat(
        (
            up.roll(-(height // 4), dims=2),
            down.roll(height // 4, dims=2),
            left.roll(-(width // 4), dims=3),
            right.roll(width // 4, dims=3),
        ),
        dim=1,
    )


class TiCBlock(nn.Module):
    """x + MSA-Conv([shift] norm(x)), then x + MLP(norm(x)); 1x1-conv MLP with GELU."""

    def __init__(
        self,
        dim: int,
        shift: bool,
        mlp_ratio: float = 4.0,
        head_dim: int = 32,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.shift = shift
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.attn = MSAConv2d(dim, dim, 3, num_heads=max(dim // head_dim, 1), pool_kv=True, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-6, **dd)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, **dd), nn.GELU(), nn.Conv2d(hidden, dim, 1, **dd)
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.shift:
            y = cyclic_shift(y)
        x = x + self.drop_path(self.attn(y))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TiCStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        downsample: bool,
        mlp_ratio: float,
        drop_path_rates: list[float],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1, **dd),
                LayerNorm2d(out_chs, eps=1e-6, **dd),
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *[
                TiCBlock(
                    out_chs,
                    shift=i % 2 == 1,
                    mlp_ratio=mlp_ratio,
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


class TiC(HierarchicalNet):
    """TiC, a Vision Transformer in Convolution.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        mlp_ratio: MLP expansion of every block.
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
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(dims[0] // 2, **dd),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(dims[0], **dd),
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                TiCStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth=depths[i],
                    downsample=i > 0,
                    mlp_ratio=mlp_ratio,
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
        self.num_features = dims[-1]
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        named_apply(_init_weights, self)


def _init_weights(module: nn.Module, name: str = "") -> None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_tic(variant: str, pretrained: bool = False, **kwargs) -> TiC:
    return build_model_with_cfg(
        TiC,
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


# our own design: no weights exist; the cfg carries the architecture's defaults only
default_cfgs = generate_default_cfgs({"tic_tiny": _cfg()})


@register_model
def tic_tiny(pretrained: bool = False, **kwargs) -> TiC:
    args = dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512))
    return _create_tic("tic_tiny", pretrained=pretrained, **dict(args, **kwargs))
