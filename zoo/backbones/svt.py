"""SVT: a hierarchical vision transformer whose first stage mixes tokens by spectral scattering.

`Scattering Vision Transformer: Spectral Mixing Matters`
    Patro & Agneeswaran, NeurIPS 2023, arXiv 2311.01310, https://github.com/badripatro/svt

The hierarchical SVT-H: a convolutional stem to 1/4, four stages of pre-norm transformer blocks
whose MLP has a 3x3 depthwise conv (PVTv2's), the first stage mixing tokens with the scattering
mixer (`zoo.operators.scattering`) and the later ones with global multi-head self-attention. The
head pools by class attention (one class-attention block on a class token initialised as the
mean token) and adds the token-labelling classifier: logits = fc(cls) + 0.5 max_tokens aux_fc(t),
the paper's inference rule; training with token-labelling targets is left to a task.

Parameter counts at 224 with the 1000-class head (both classifiers), against the SVT-H rows of
the paper's ImageNet-1K comparison (224x224; the same figures the authors' later SCT and SiMBA
comparison tables repeat):

    svt_h_s   22.05M   (table: 22.0M)
    svt_h_b   32.88M   (table: 32.8M)

The table's SVT-H-L (54.0M) is left out: the official configuration for it counts 54.6M (1.1%
off), so its table entry does not describe the released model.

Our own implementation; the facts (stem, widths, depths, heads, MLP ratios, one scattering stage,
the class-attention head with token labelling) follow the official repository.
"""

import math

import torch
from timm.layers import DropPath, LayerNorm, LayerNorm2d, Mlp, get_device_dtype, trunc_normal_
from timm.layers.attention import Attention
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from timm.models.cait import ClassAttn
from torch import nn

from zoo.operators.mix_ffn import MixFfn
from zoo.operators.scattering import ScatterMixer

from ._hierarchical import HierarchicalNet

__all__ = ["SVT"]


class GlobalAttention2d(nn.Module):
    """Multi-head self-attention over all positions of an NCHW map."""

    def __init__(self, dim: int, num_heads: int, device=None, dtype=None):
        super().__init__()
        self.attn = Attention(dim, num_heads, qkv_bias=True, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.attn(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(x.shape)


class SVTBlock(nn.Module):
    """Pre-norm block: token mixer (scattering or attention) then the depthwise-conv MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        scatter_size: tuple[int, int] | None,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        if scatter_size is None:
            self.mixer = GlobalAttention2d(dim, num_heads, **dd)
        else:
            self.mixer = ScatterMixer(dim, size=scatter_size, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.mlp = MixFfn(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SVTStage(nn.Module):
    """Optional 3x3 stride-2 conv embedding, the blocks, and (except the last stage) a norm."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        downsample: bool,
        scatter_size: tuple[int, int] | None,
        final_norm: bool,
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
                LayerNorm2d(out_chs, eps=1e-5, **dd),
            )
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *[
                SVTBlock(out_chs, num_heads, mlp_ratio, scatter_size, drop_path_rates[i], **dd)
                for i in range(depth)
            ]
        )
        # the last stage's norm comes after the class attention, in the head
        self.norm = LayerNorm2d(out_chs, eps=1e-6, **dd) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)


class ClassAttentionBlock(nn.Module):
    """The class token attends to all tokens, then goes through an MLP; patch tokens pass."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm(dim, eps=1e-6, **dd)
        self.attn = ClassAttn(dim, num_heads, qkv_bias=True, **dd)
        self.norm2 = LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, :1] + self.attn(self.norm1(x))
        cls = cls + self.mlp(self.norm2(cls))
        return torch.cat((cls, x[:, 1:]), dim=1)


class ClassAttentionHead(nn.Module):
    """SVT's head: class-attention pooling, norm, classifier plus token-labelling classifier.

    `pool_type=''` returns the NCHW map untouched. Once pruned (`reset(..., reset_other=True)`)
    the class block and norm are gone and token pooling is a plain mean of the tokens.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_heads: int,
        mlp_ratio: float,
        pool_type: str = "token",
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.in_features = self.num_features = in_features
        self.pool_type = _check_pool(pool_type)
        self.cls_block = ClassAttentionBlock(in_features, num_heads, mlp_ratio, **dd)
        self.norm = LayerNorm(in_features, eps=1e-6, **dd)
        self.drop = nn.Dropout(drop_rate)
        self.fc, self.aux_fc = self._classifiers(num_classes, **dd)

    def _classifiers(self, num_classes: int, **dd) -> tuple[nn.Module, nn.Module | None]:
        if num_classes <= 0:
            return nn.Identity(), None
        fc = nn.Linear(self.in_features, num_classes, **dd)
        aux_fc = nn.Linear(self.in_features, num_classes, **dd)
        return fc.train(self.training), aux_fc.train(self.training)

    def reset(
        self,
        num_classes: int,
        pool_type: str | None = None,
        reset_other: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        dd = {"device": device, "dtype": dtype}
        if pool_type is not None:
            self.pool_type = _check_pool(pool_type)
        if reset_other:
            self.cls_block, self.norm = nn.Identity(), nn.Identity()
        self.fc, self.aux_fc = self._classifiers(num_classes, **dd)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.pool_type:
            return x
        tokens = x.flatten(2).transpose(1, 2)
        tokens = torch.cat((tokens.mean(1, keepdim=True), tokens), dim=1)
        tokens = self.norm(self.cls_block(tokens))
        pooled = self.drop(tokens[:, 0])
        if pre_logits:
            return pooled
        logits = self.fc(pooled)
        if self.aux_fc is not None:
            # token labelling: the best-scoring token's class scores, added at half weight
            logits = logits + 0.5 * self.aux_fc(tokens[:, 1:]).amax(dim=1)
        return logits


def _check_pool(pool_type: str) -> str:
    if pool_type not in ("token", ""):
        raise ValueError(
            f"SVT pools by class attention ('token') or not at all (''), got {pool_type!r}"
        )
    return pool_type


class SVT(HierarchicalNet):
    """SVT-H, the hierarchical Scattering Vision Transformer.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: 'token' (class-attention pooling) or '' (no pooling).
        stem_width: Channels of the three stem convs before the first embedding.
        depths: Blocks per stage.
        dims: Channels per stage.
        num_heads: Attention heads per stage (the class-attention head uses the last).
        mlp_ratios: MLP expansion per stage.
        scatter_stages: How many leading stages mix with the scattering mixer (the rest attend).
        img_size: Input side the scattering weights are sized for (resampled at other sizes).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        stem_width: int = 32,
        depths: tuple[int, ...] = (3, 4, 6, 3),
        dims: tuple[int, ...] = (64, 128, 320, 448),
        num_heads: tuple[int, ...] = (2, 4, 10, 14),
        mlp_ratios: tuple[float, ...] = (8, 8, 4, 4),
        scatter_stages: int = 1,
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
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False, **dd),
            nn.BatchNorm2d(stem_width, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False, **dd),
            nn.BatchNorm2d(stem_width, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False, **dd),
            nn.BatchNorm2d(stem_width, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, dims[0], 3, stride=2, padding=1, **dd),
            LayerNorm2d(dims[0], eps=1e-5, **dd),
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        num_stages = len(depths)
        self.stages = nn.Sequential(
            *[
                SVTStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth=depths[i],
                    num_heads=num_heads[i],
                    mlp_ratio=mlp_ratios[i],
                    downsample=i > 0,
                    scatter_size=(img_size // 2 ** (i + 2),) * 2 if i < scatter_stages else None,
                    final_norm=i < num_stages - 1,
                    drop_path_rates=rates[i].tolist(),
                    **dd,
                )
                for i in range(num_stages)
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(num_stages)
        ]
        self.num_features = self.head_hidden_size = dims[-1]
        self.head = ClassAttentionHead(
            self.num_features,
            num_classes,
            num_heads=num_heads[-1],
            mlp_ratio=mlp_ratios[-1],
            pool_type=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        named_apply(_init_weights, self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^stages\.(\d+)\.norm", (99999,)),
            ],
        )

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, reset_other: bool = False
    ) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool, reset_other, **get_device_dtype(self))


def _init_weights(module: nn.Module, name: str = "") -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, std=math.sqrt(2.0 / (fan_out // module.groups)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_svt(variant: str, pretrained: bool = False, **kwargs) -> SVT:
    return build_model_with_cfg(
        SVT,
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
        "classifier": ("head.fc", "head.aux_fc"),
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"svt_h_s": _cfg(), "svt_h_b": _cfg()})


@register_model
def svt_h_s(pretrained: bool = False, **kwargs) -> SVT:
    args = dict(
        stem_width=32, depths=(3, 4, 6, 3), dims=(64, 128, 320, 448), num_heads=(2, 4, 10, 14)
    )
    return _create_svt("svt_h_s", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def svt_h_b(pretrained: bool = False, **kwargs) -> SVT:
    args = dict(
        stem_width=64, depths=(3, 4, 12, 3), dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16)
    )
    return _create_svt("svt_h_b", pretrained=pretrained, **dict(args, **kwargs))
