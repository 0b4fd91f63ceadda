"""GLNet: a hierarchical backbone of GLMix blocks (convs on the grid, attention on slots).

`Revisiting the Integration of Convolution and Attention for Vision Backbone`
    Zhu et al., NeurIPS 2024, arXiv 2411.14429, https://github.com/rayleizhu/GLMix

Four stages of pre-norm blocks. A GLMix block mixes tokens with `zoo.operators.glmix.GLMix`
(whose slots are pooled from the block input), an attention block with global multi-head
self-attention; both then run a 1x1-conv MLP. The GLNet-xG family (4G, 9G, 16G) uses an
overlapping conv stem and strided 3x3 transitions, a depthwise-conv position encoding before every
block, a depthwise conv inside the MLP, and alternates GLMix and attention blocks in stage 3;
GLNet-STL keeps the Swin-T layout (4x4 patch stem, 2x2 transitions, plain blocks). Batch norm in
the stem, transitions and before the head, layer norm in the blocks; heads of 32 channels.

Parameter counts at 224 with the 1000-class head, against the model card of the official
repository (README; whole millions):

    glnet_4g    27.00M   (table: 27M)
    glnet_stl   30.30M   (table: 30M)
    glnet_9g    60.01M   (table: 60M)
    glnet_16g  106.06M   (table: 106M)

Our own implementation; the facts (widths, depths, MLP ratios, layouts, 64 slots pooled 8x8,
5x5 depthwise local branch, layer scale 1e-4 for 16G) follow the official repository (MIT).
"""

import torch
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, LayerScale2d, trunc_normal_
from timm.layers.attention import Attention
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from torch import nn

from zoo.operators.glmix import GLMix

from ._hierarchical import NormHeadNet

__all__ = ["GLNet"]


class GlobalAttention2d(nn.Module):
    """Multi-head self-attention over all positions of an NCHW map."""

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None):
        super().__init__()
        self.attn = Attention(dim, num_heads, qkv_bias=True, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.attn(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(x.shape)


class GLNetMlp(nn.Module):
    """1x1 conv, optional residual 3x3 depthwise conv, GELU, 1x1 conv (NCHW)."""

    def __init__(self, dim: int, hidden: int, dw_conv: bool, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Conv2d(dim, hidden, 1, **dd)
        self.dwconv = (
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, **dd) if dw_conv else None
        )
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if self.dwconv is not None:
            x = x + self.dwconv(x)
        return self.fc2(self.act(x))


class GLNetBlock(nn.Module):
    """[x + dwconv(x)] -> x + mixer(norm(x)) -> x + mlp(norm(x)), the mixer GLMix or attention."""

    def __init__(
        self,
        dim: int,
        glmix: bool,
        mlp_ratio: float,
        pos_conv: bool,
        mlp_dw_conv: bool,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        head_dim: int = 32,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.pos_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd) if pos_conv else None
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        if glmix:
            self.mixer = GLMix(dim, head_dim=head_dim, **dd)
            self.slot_pool = nn.AdaptiveAvgPool2d(self.mixer.pool_size)
        else:
            self.mixer = GlobalAttention2d(dim, dim // head_dim, **dd)
            self.slot_pool = None
        self.ls1 = LayerScale2d(dim, layer_scale, **dd) if layer_scale else nn.Identity()
        self.norm2 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.mlp = GLNetMlp(dim, int(dim * mlp_ratio), mlp_dw_conv, **dd)
        self.ls2 = LayerScale2d(dim, layer_scale, **dd) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slot_pool is not None:
            # the slots start from the block input, before position encoding and norm
            slots = self.slot_pool(x).flatten(2).transpose(1, 2)
            if self.pos_conv is not None:
                x = x + self.pos_conv(x)
            mixed = self.mixer(self.norm1(x), slots)
        else:
            if self.pos_conv is not None:
                x = x + self.pos_conv(x)
            mixed = self.mixer(self.norm1(x))
        x = x + self.drop_path(self.ls1(mixed))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class GLNetStage(nn.Module):
    """Transition (identity in the first stage) then blocks; `layout` picks each block's mixer."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        layout: str,
        downsample: str | None,
        mlp_ratio: float,
        pos_conv: bool,
        mlp_dw_conv: bool,
        layer_scale: float | None,
        drop_path_rates: list[float],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        match downsample:
            case None:
                self.downsample = nn.Identity()
            case "patch":  # Swin-T layout: norm then 2x2 stride-2 conv
                self.downsample = nn.Sequential(
                    nn.BatchNorm2d(in_chs, **dd), nn.Conv2d(in_chs, out_chs, 2, stride=2, **dd)
                )
            case "overlap":  # 3x3 stride-2 conv then norm
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1, **dd),
                    nn.BatchNorm2d(out_chs, **dd),
                )
            case _:
                raise ValueError(f"unknown downsample {downsample!r}")
        self.blocks = nn.Sequential(
            *[
                GLNetBlock(
                    out_chs,
                    glmix=_uses_glmix(layout, i),
                    mlp_ratio=mlp_ratio,
                    pos_conv=pos_conv,
                    mlp_dw_conv=mlp_dw_conv,
                    layer_scale=layer_scale,
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


def _uses_glmix(layout: str, index: int) -> bool:
    match layout:
        case "glmix":
            return True
        case "attention":
            return False
        case "alternate":  # GLMix, attention, GLMix, ...
            return index % 2 == 0
    raise ValueError(f"unknown stage layout {layout!r}")


def _stem(in_chans: int, dim: int, style: str, **dd) -> nn.Sequential:
    if style == "patch":
        return nn.Sequential(nn.Conv2d(in_chans, dim, 4, stride=4, **dd), nn.BatchNorm2d(dim, **dd))
    return nn.Sequential(
        nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1, **dd),
        nn.BatchNorm2d(dim // 2, **dd),
        nn.GELU(),
        nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1, **dd),
        nn.BatchNorm2d(dim, **dd),
    )


class GLNet(NormHeadNet):
    """GLNet.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        mlp_ratio: MLP expansion of every block.
        layouts: Per stage, 'glmix', 'attention' or 'alternate' blocks.
        downsample: 'overlap' (conv stem, 3x3 transitions) or 'patch' (Swin-T's 4x4 / 2x2).
        pos_conv: Depthwise 3x3 position encoding before every block.
        mlp_dw_conv: Residual 3x3 depthwise conv inside the MLP.
        layer_scale: Initial layer scale, None for none.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (4, 4, 18, 4),
        dims: tuple[int, ...] = (64, 128, 256, 512),
        mlp_ratio: float = 3.0,
        layouts: tuple[str, ...] = ("glmix", "glmix", "alternate", "attention"),
        downsample: str = "overlap",
        pos_conv: bool = True,
        mlp_dw_conv: bool = True,
        layer_scale: float | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if downsample not in ("overlap", "patch"):
            raise ValueError(f"downsample must be 'overlap' or 'patch', got {downsample!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = _stem(in_chans, dims[0], downsample, **dd)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                GLNetStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth=depths[i],
                    layout=layouts[i],
                    downsample=downsample if i > 0 else None,
                    mlp_ratio=mlp_ratio,
                    pos_conv=pos_conv,
                    mlp_dw_conv=mlp_dw_conv,
                    layer_scale=layer_scale,
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
        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        named_apply(_init_weights, self)


def _init_weights(module: nn.Module, name: str = "") -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_glnet(variant: str, pretrained: bool = False, **kwargs) -> GLNet:
    return build_model_with_cfg(
        GLNet,
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
    {"glnet_4g": _cfg(), "glnet_stl": _cfg(), "glnet_9g": _cfg(), "glnet_16g": _cfg()}
)

_STL = dict(
    layouts=("glmix", "glmix", "glmix", "attention"),
    downsample="patch",
    pos_conv=False,
    mlp_dw_conv=False,
)


@register_model
def glnet_4g(pretrained: bool = False, **kwargs) -> GLNet:
    args = dict(depths=(4, 4, 18, 4), dims=(64, 128, 256, 512))
    return _create_glnet("glnet_4g", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def glnet_stl(pretrained: bool = False, **kwargs) -> GLNet:
    args = dict(depths=(2, 2, 6, 2), dims=(96, 192, 384, 768), mlp_ratio=4.0, **_STL)
    return _create_glnet("glnet_stl", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def glnet_9g(pretrained: bool = False, **kwargs) -> GLNet:
    args = dict(depths=(4, 4, 18, 4), dims=(96, 192, 384, 768))
    return _create_glnet("glnet_9g", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def glnet_16g(pretrained: bool = False, **kwargs) -> GLNet:
    args = dict(depths=(4, 4, 18, 4), dims=(128, 256, 512, 1024), layer_scale=1e-4)
    return _create_glnet("glnet_16g", pretrained=pretrained, **dict(args, **kwargs))
