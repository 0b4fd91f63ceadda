"""MOAT: MBConv blocks, then MOAT blocks (an MBConv followed by self-attention), in four stages.

`MOAT: Alternating Mobile Convolutions and Attention Brings Strong Vision Models`
    Yang et al., ICLR 2023, arXiv 2210.01820,
    https://github.com/google-research/deeplab2 (model/pixel_encoder/moat.py)

A MOAT block starts from a Transformer block, replaces its MLP with an inverted-residual
(MBConv) block without squeeze-and-excitation, and moves it in front of the self-attention.
When the block opens a stage, the MBConv's depthwise conv downsamples, so the attention runs on
the strided map. Stages 1-2 are MBConv blocks (with SE), stages 3-4 MOAT blocks.

Parameter counts at 224 with the 1000-class head, against the official ImageNet checkpoint
tables (g3doc/projects/moat_imagenet_pretrained_checkpoints.md, "with positional embedding";
the paper's Tables 2 and 3 give the same figures):

    tiny_moat_0   3.36M   (table: 3.4M)
    tiny_moat_1   5.12M   (table: 5.1M)
    tiny_moat_2   9.77M   (table: 9.8M)
    moat_0       27.85M   (table: 27.8M)

Our own implementation; the facts (stem, widths, depths, expansion 4, SE ratio 0.25 of the
output width, attention heads of 32 channels, relative position tables of 14x14 at stride 16
and 7x7 at stride 32 that are resized to the attended window, LayerNorm eps 1e-5) follow the
official TensorFlow code (Apache-2.0 license). The relative position table is resized to the
actual window, so any input size works; `window_sizes` turns the global attention of a stage
into non-overlapping window attention (the paper's setting for downstream tasks), with windows
clamped to the feature map and the map zero-padded (padded keys masked) to a whole number of
windows.
"""

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import (
    DropPath,
    LayerNorm2d,
    NormMlpClassifierHead,
    SEModule,
    trunc_normal_,
)
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from timm.models._features_fx import register_notrace_function
from torch import nn

from ._hierarchical import HierarchicalNet

__all__ = ["MOAT"]

_BN_EPS = 1e-3  # the official TF SyncBatchNormalization default


@register_notrace_function
def relative_position_bias(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-head bias (heads, h*w, h*w) of a 2D relative position table resized to the window.

    The table (heads, 2P-1, 2P-1) holds one value per (dy, dx) offset of a P x P window; it is
    bilinearly resized to (2h-1, 2w-1) (as the official code does) and gathered so that
    bias[query (i, j), key (y, x)] = table[y - i + h - 1, x - j + w - 1].
    """
    table = F.interpolate(
        table.unsqueeze(0), size=(2 * height - 1, 2 * width - 1), mode="bilinear"
    ).squeeze(0)
    rows = torch.arange(height, device=table.device)
    cols = torch.arange(width, device=table.device)
    dy = rows[None, :] - rows[:, None] + height - 1  # [query row, key row]
    dx = cols[None, :] - cols[:, None] + width - 1
    bias = table[:, dy[:, None, :, None], dx[None, :, None, :]]  # heads, i, j, y, x
    return bias.reshape(table.shape[0], height * width, height * width)


@register_notrace_function
def window_geometry(height: int, width: int, window: int) -> tuple[int, int, int, int]:
    """The window (clamped to the map) and the bottom/right padding to a whole number of them."""
    wh, ww = min(window, height), min(window, width)
    return wh, ww, (wh - height % wh) % wh, (ww - width % ww) % ww


def window_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, C, H, W) with H, W multiples of the window -> (B * windows, wh * ww, C) tokens."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // wh, wh, w // ww, ww).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, wh * ww, c)


def window_reverse(tokens: torch.Tensor, wh: int, ww: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * windows, wh * ww, C) -> (B, C, H, W)."""
    c = tokens.shape[-1]
    x = tokens.reshape(-1, h // wh, w // ww, wh, ww, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(-1, c, h, w)


class RelPosAttention(nn.Module):
    """Multi-head self-attention on an NCHW map with a resizable 2D relative position bias.

    Global over the whole map when `window_size` is None, otherwise within non-overlapping
    windows (no shifting: the MBConv before it exchanges information across windows).
    """

    def __init__(
        self,
        dim: int,
        head_dim: int = 32,
        pos_embed_size: int | None = 7,
        window_size: int | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.window_size = window_size
        self.qkv = nn.Linear(dim, 3 * dim, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        if pos_embed_size:
            span = 2 * pos_embed_size - 1
            self.relative_position_table = nn.Parameter(
                torch.empty(self.num_heads, span, span, **dd)
            )
            # initialised here too, not only by the model: a bare attention must not read garbage
            nn.init.trunc_normal_(self.relative_position_table, std=0.02)
        else:
            self.relative_position_table = None

    def _attend(self, tokens: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, n, c = tokens.shape
        qkv = self.qkv(tokens).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale head_dim**-0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def _bias(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor | None:
        if self.relative_position_table is None:
            return None
        return relative_position_bias(self.relative_position_table, height, width).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.window_size is None:
            out = self._attend(x.flatten(2).transpose(1, 2), self._bias(h, w, x.dtype))
            return out.transpose(1, 2).reshape(b, c, h, w)
        wh, ww, pad_h, pad_w = window_geometry(h, w, self.window_size)
        x = F.pad(x, (0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        # padded pixels are keys no query may attend to
        valid = F.pad(x.new_ones(1, 1, h, w), (0, pad_w, 0, pad_h))
        key_mask = window_partition(valid, wh, ww).squeeze(-1)  # windows, wh * ww
        mask = torch.zeros_like(key_mask).masked_fill(key_mask == 0, float("-inf"))
        mask = mask[:, None, None, :]
        bias = self._bias(wh, ww, x.dtype)
        if bias is not None:
            mask = mask + bias
        mask = mask.repeat(b, 1, 1, 1)  # windows are batch-major in window_partition
        out = self._attend(window_partition(x, wh, ww), mask)
        return window_reverse(out, wh, ww, hp, wp)[:, :, :h, :w]


class MBConv(nn.Module):
    """Inverted residual (pre-BN, 1x1 expand, 3x3 depthwise, optional SE, 1x1 project).

    The shortcut average-pools (2x2) when strided and projects with a 1x1 conv when the width
    changes, as in CoAtNet and MOAT.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        expand_ratio: float = 4.0,
        se_ratio: float | None = 0.25,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        mid_chs = int(out_chs * expand_ratio)
        shortcut = []
        if stride > 1:
            shortcut.append(nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False))
        if in_chs != out_chs:
            shortcut.append(nn.Conv2d(in_chs, out_chs, 1, **dd))
        self.shortcut = nn.Sequential(*shortcut)
        self.pre_norm = nn.BatchNorm2d(in_chs, eps=_BN_EPS, **dd)
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False, **dd)
        self.norm1 = nn.BatchNorm2d(mid_chs, eps=_BN_EPS, **dd)
        self.conv_dw = nn.Conv2d(
            mid_chs, mid_chs, 3, stride, padding=1, groups=mid_chs, bias=False, **dd
        )
        self.norm2 = nn.BatchNorm2d(mid_chs, eps=_BN_EPS, **dd)
        self.act = nn.GELU()
        if se_ratio:
            # the squeeze width is a fraction of the block's output width, not of the expansion
            rd_chs = max(1, int(out_chs * se_ratio))
            self.se = SEModule(mid_chs, rd_channels=rd_chs, act_layer=nn.SiLU, **dd)
        else:
            self.se = nn.Identity()
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act(self.norm1(self.conv_pw(self.pre_norm(x))))
        x = self.se(self.act(self.norm2(self.conv_dw(x))))
        return shortcut + self.drop_path(self.conv_pwl(x))


class MOATBlock(nn.Module):
    """An MBConv without SE (it replaces the MLP and may downsample), then pre-norm attention."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        head_dim: int = 32,
        pos_embed_size: int | None = 7,
        window_size: int | None = None,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.mbconv = MBConv(in_chs, out_chs, stride, se_ratio=None, drop_path=drop_path, **dd)
        self.norm = LayerNorm2d(out_chs, eps=1e-5, **dd)
        self.attn = RelPosAttention(out_chs, head_dim, pos_embed_size, window_size, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mbconv(x)
        return x + self.drop_path(self.attn(self.norm(x)))


class MOATStage(nn.Module):
    """A stage of MBConv or MOAT blocks; its first block strides by 2 and changes the width."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        block_type: Literal["mbconv", "moat"],
        head_dim: int = 32,
        pos_embed_size: int | None = None,
        window_size: int | None = None,
        drop_path_rates: list[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.grad_checkpointing = False
        match block_type:
            case "mbconv":
                make_block = MBConv
            case "moat":
                make_block = partial(
                    MOATBlock,
                    head_dim=head_dim,
                    pos_embed_size=pos_embed_size,
                    window_size=window_size,
                )
            case _:
                raise ValueError(f"block_type must be 'mbconv' or 'moat', got {block_type!r}")
        rates = drop_path_rates or [0.0] * depth
        self.blocks = nn.Sequential(
            *[
                make_block(
                    in_chs if i == 0 else out_chs,
                    out_chs,
                    stride=2 if i == 0 else 1,
                    drop_path=rates[i],
                    device=device,
                    dtype=dtype,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class MOAT(HierarchicalNet):
    """MOAT.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        stem_width: Channels of the two 3x3 stem convs (the first strides by 2).
        depths: Blocks per stage.
        dims: Channels per stage.
        block_types: 'mbconv' or 'moat' per stage.
        head_dim: Channels per attention head.
        pos_embed_sizes: Per stage, the window side P of the (2P-1)^2 relative position table
            (resized to the actual window); None for no relative position bias.
        window_sizes: Per stage, the attention window side (clamped to the map); None for
            global attention (the classification setting).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        stem_width: int = 64,
        depths: tuple[int, ...] = (2, 3, 7, 2),
        dims: tuple[int, ...] = (96, 192, 384, 768),
        block_types: tuple[str, ...] = ("mbconv", "mbconv", "moat", "moat"),
        head_dim: int = 32,
        pos_embed_sizes: tuple[int | None, ...] = (None, None, 14, 7),
        window_sizes: tuple[int | None, ...] = (None, None, None, None),
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
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", nn.Conv2d(in_chans, stem_width, 3, 2, padding=1, **dd))
        self.stem.add_module("norm1", nn.BatchNorm2d(stem_width, eps=_BN_EPS, **dd))
        self.stem.add_module("act1", nn.GELU())
        self.stem.add_module("conv2", nn.Conv2d(stem_width, stem_width, 3, padding=1, **dd))
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        in_chs = stem_width
        stages = []
        for i, depth in enumerate(depths):
            stages.append(
                MOATStage(
                    in_chs,
                    dims[i],
                    depth,
                    block_types[i],
                    head_dim=head_dim,
                    pos_embed_size=pos_embed_sizes[i],
                    window_size=window_sizes[i],
                    drop_path_rates=rates[i].tolist(),
                    **dd,
                )
            )
            in_chs = dims[i]
        self.stages = nn.Sequential(*stages)
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = dims[-1]
        # global average pool -> LayerNorm -> classifier, as the official head
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-5),
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        named_apply(_init_weights, self)


def _init_weights(module: nn.Module, name: str = "") -> None:
    # the official initialisers: N(0, 0.02) kernels and position tables, zero biases
    if isinstance(module, nn.Conv2d | nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, RelPosAttention) and module.relative_position_table is not None:
        trunc_normal_(module.relative_position_table, std=0.02)


def _create_moat(variant: str, pretrained: bool = False, **kwargs) -> MOAT:
    return build_model_with_cfg(
        MOAT,
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
        "first_conv": "stem.conv1",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only; the tiny
# models were trained at 256, MOAT-0 at 224
default_cfgs = generate_default_cfgs(
    {
        "tiny_moat_0": _cfg(input_size=(3, 256, 256), pool_size=(8, 8)),
        "tiny_moat_1": _cfg(input_size=(3, 256, 256), pool_size=(8, 8)),
        "tiny_moat_2": _cfg(input_size=(3, 256, 256), pool_size=(8, 8)),
        "moat_0": _cfg(),
    }
)


@register_model
def tiny_moat_0(pretrained: bool = False, **kwargs) -> MOAT:
    args = dict(stem_width=32, depths=(2, 3, 7, 2), dims=(32, 64, 128, 256))
    return _create_moat("tiny_moat_0", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def tiny_moat_1(pretrained: bool = False, **kwargs) -> MOAT:
    args = dict(stem_width=40, depths=(2, 3, 7, 2), dims=(40, 80, 160, 320))
    return _create_moat("tiny_moat_1", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def tiny_moat_2(pretrained: bool = False, **kwargs) -> MOAT:
    args = dict(stem_width=56, depths=(2, 3, 7, 2), dims=(56, 112, 224, 448))
    return _create_moat("tiny_moat_2", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def moat_0(pretrained: bool = False, **kwargs) -> MOAT:
    args = dict(stem_width=64, depths=(2, 3, 7, 2), dims=(96, 192, 384, 768))
    return _create_moat("moat_0", pretrained=pretrained, **dict(args, **kwargs))
