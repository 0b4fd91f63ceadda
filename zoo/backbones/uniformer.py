"""UniFormer: local relation aggregators (convolution) early, global ones (self-attention) late.

`UniFormer: Unifying Convolution and Self-attention for Visual Recognition`
    Li et al., TPAMI 2023, arXiv 2201.09450, https://github.com/Sense-X/UniFormer

Every block is DPE -> MHRA -> FFN, each residual. Stages 1-2 use the local MHRA (1x1, 5x5
depthwise, 1x1 convs; BatchNorm), stages 3-4 the global MHRA (multi-head self-attention;
LayerNorm). The dynamic position embedding (a 3x3 depthwise conv) replaces absolute position
embeddings, so any input size works. UniFormer-S embeds patches with non-overlapping strided
convs; UniFormer-S-dagger ("small_plus") with overlapping 3x3 convs and BatchNorm, is deeper
and uses 32-channel heads.

Parameter counts at 224 with the 1000-class head, against the official model-zoo table
(image_classification/README.md of the official repository; the paper's Table 2 gives the same):

    uniformer_small        21.55M   (table: 22M)
    uniformer_small_plus   24.03M   (table: 24M)

Our own implementation; the facts (depths, widths, head widths, MLP ratio 4, 5x5 local affinity,
stems, BatchNorm before the pooled head) follow the official code (MIT license).
"""

import torch
from timm.layers import (
    Attention,
    ClassifierHead,
    DropPath,
    LayerNorm,
    LayerNorm2d,
    Mlp,
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

from zoo.operators.uniformer import DynamicPositionEmbedding, LocalMHRA

from ._hierarchical import NormHeadNet

__all__ = ["UniFormer"]


class LocalBlock(nn.Module):
    """DPE, then BatchNorm -> local MHRA and BatchNorm -> conv MLP, each residual."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.pos_embed = DynamicPositionEmbedding(dim, **dd)
        self.norm1 = nn.BatchNorm2d(dim, **dd)
        self.attn = LocalMHRA(dim, kernel_size=5, **dd)
        self.norm2 = nn.BatchNorm2d(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), use_conv=True, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_embed(x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GlobalBlock(nn.Module):
    """DPE, then LayerNorm -> global MHRA (self-attention) and LayerNorm -> MLP, on tokens."""

    def __init__(
        self,
        dim: int,
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.pos_embed = DynamicPositionEmbedding(dim, **dd)
        self.norm1 = LayerNorm(dim, eps=1e-6, **dd)
        self.attn = Attention(dim, num_heads=dim // head_dim, qkv_bias=True, **dd)
        self.norm2 = LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_embed(x)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(b, c, h, w)


def _patch_embed(
    in_chs: int, out_chs: int, patch_size: int, device=None, dtype=None
) -> nn.Sequential:
    """Non-overlapping patches: a patch-size conv with equal stride, then LayerNorm."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, patch_size, patch_size, device=device, dtype=dtype),
        LayerNorm2d(out_chs, eps=1e-5, device=device, dtype=dtype),
    )


def _conv_embed(in_chs: int, out_chs: int, device=None, dtype=None) -> nn.Sequential:
    """Overlapping: a 3x3 stride-2 conv, then BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 3, 2, padding=1, device=device, dtype=dtype),
        nn.BatchNorm2d(out_chs, device=device, dtype=dtype),
    )


def _conv_stem(in_chs: int, out_chs: int, device=None, dtype=None) -> nn.Sequential:
    """Two overlapping 3x3 stride-2 convs (UniFormer-S-dagger's stem)."""
    dd = {"device": device, "dtype": dtype}
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs // 2, 3, 2, padding=1, **dd),
        nn.BatchNorm2d(out_chs // 2, **dd),
        nn.GELU(),
        nn.Conv2d(out_chs // 2, out_chs, 3, 2, padding=1, **dd),
        nn.BatchNorm2d(out_chs, **dd),
    )


class UniFormerStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        global_mhra: bool,
        downsample: bool,
        conv_embed: bool = False,
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        drop_path_rates: list[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if not downsample:
            self.downsample = nn.Identity()
        elif conv_embed:
            self.downsample = _conv_embed(in_chs, out_chs, **dd)
        else:
            self.downsample = _patch_embed(in_chs, out_chs, 2, **dd)
        rates = drop_path_rates or [0.0] * depth
        if global_mhra:
            blocks = [
                GlobalBlock(out_chs, head_dim, mlp_ratio, rates[i], **dd) for i in range(depth)
            ]
        else:
            blocks = [LocalBlock(out_chs, mlp_ratio, rates[i], **dd) for i in range(depth)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class UniFormer(NormHeadNet):
    """UniFormer for images.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        global_stages: Per stage, global MHRA (self-attention) instead of local MHRA.
        head_dim: Channels per attention head of the global MHRA.
        mlp_ratio: MLP hidden width / channels.
        conv_stem: Overlapping conv stem and downsampling (UniFormer-S-dagger) instead of
            non-overlapping patch embeddings.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (3, 4, 8, 3),
        dims: tuple[int, ...] = (64, 128, 320, 512),
        global_stages: tuple[bool, ...] = (False, False, True, True),
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        conv_stem: bool = False,
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
        if conv_stem:
            self.stem = _conv_stem(in_chans, dims[0], **dd)
        else:
            self.stem = _patch_embed(in_chans, dims[0], 4, **dd)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                UniFormerStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depths[i],
                    global_mhra=global_stages[i],
                    downsample=i > 0,
                    conv_embed=conv_stem,
                    head_dim=head_dim,
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
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.BatchNorm2d(self.num_features, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        named_apply(_init_weights, self)


def _init_weights(module: nn.Module, name: str = "") -> None:
    # as the official code: Linear layers N(0, 0.02) truncated with zero bias; convs keep
    # PyTorch's default initialisation
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_uniformer(variant: str, pretrained: bool = False, **kwargs) -> UniFormer:
    return build_model_with_cfg(
        UniFormer,
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
        "first_conv": "stem.0",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "uniformer_small": _cfg(),
        "uniformer_small_plus": _cfg(),
    }
)


@register_model
def uniformer_small(pretrained: bool = False, **kwargs) -> UniFormer:
    args = dict(depths=(3, 4, 8, 3), dims=(64, 128, 320, 512), head_dim=64)
    return _create_uniformer("uniformer_small", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def uniformer_small_plus(pretrained: bool = False, **kwargs) -> UniFormer:
    args = dict(depths=(3, 5, 9, 3), dims=(64, 128, 320, 512), head_dim=32, conv_stem=True)
    return _create_uniformer("uniformer_small_plus", pretrained=pretrained, **dict(args, **kwargs))
