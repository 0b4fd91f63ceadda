"""CAS-ViT: a four-stage hybrid whose token mixer is convolutional additive self-attention.

`CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile
Applications`
    Zhang et al., arXiv 2408.03703, https://github.com/Tianfang-Zhang/CAS-ViT

Parameter counts at 224 with the 1000-class heads, against the official model-zoo table
(MODEL_ZOO.md of the official repository; the paper's ImageNet-1K table rounds the same figures to
3.2, 5.8, 12.4 and 21.8M):

    cas_vit_xs   3.20M   (table: 3.20M)
    cas_vit_s    5.76M   (table: 5.76M)
    cas_vit_m   12.42M   (table: 12.42M)
    cas_vit_t   21.76M   (table: 21.76M)

The table counts both classifiers: CAS-ViT is trained with DeiT-style distillation, a second
linear head on the same pooled features, and at inference the two predictions are averaged.

Our own implementation; the facts (two-conv stem to 1/4, 3x3 stride-2 conv + BN between stages,
blocks of local integration -> CATM -> MLP with BatchNorm, depths and widths, MLP ratio 4) follow
the official repository (MIT license).
"""

import torch
from timm.layers import ConvMlp, DropPath, SelectAdaptivePool2d, get_device_dtype, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from torch import nn

from zoo.operators.catm import ConvAdditiveTokenMixer

from ._hierarchical import NormHeadNet

__all__ = ["CasVit"]


class LocalIntegration(nn.Module):
    """Local context before the mixer: 1x1 conv -> BN -> 3x3 depthwise conv -> GELU -> 1x1 conv."""

    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = nn.Sequential(
            nn.Conv2d(dim, dim, 1, **dd),
            nn.BatchNorm2d(dim, **dd),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd),
            nn.GELU(),
            nn.Conv2d(dim, dim, 1, **dd),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CasVitBlock(nn.Module):
    """Local integration, then CATM and a conv MLP, each pre-normed with BatchNorm, all residual."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.local_integration = LocalIntegration(dim, **dd)
        self.norm1 = nn.BatchNorm2d(dim, **dd)
        self.token_mixer = ConvAdditiveTokenMixer(dim, proj_drop=proj_drop, **dd)
        self.norm2 = nn.BatchNorm2d(dim, **dd)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.local_integration(x)
        x = x + self.drop_path(self.token_mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CasVitStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        downsample: bool,
        mlp_ratio: float = 4.0,
        drop_path_rates: list[float] | None = None,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1, **dd),
                nn.BatchNorm2d(out_chs, **dd),
            )
        else:
            self.downsample = nn.Identity()
        drop_path_rates = drop_path_rates or [0.0] * depth
        self.blocks = nn.Sequential(
            *[
                CasVitBlock(
                    out_chs,
                    mlp_ratio=mlp_ratio,
                    drop_path=drop_path_rates[i],
                    proj_drop=proj_drop,
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


class CasVit(NormHeadNet):
    """CAS-ViT.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        mlp_ratio: MLP hidden width over block width.
        drop_rate: Dropout before the classifiers.
        proj_drop_rate: Dropout after the token mixer and inside the MLP.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 4, 2),
        dims: tuple[int, ...] = (48, 56, 112, 220),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
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
            nn.Conv2d(in_chans, dims[0] // 2, 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(dims[0] // 2, **dd),
            nn.ReLU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1, **dd),
            nn.BatchNorm2d(dims[0], **dd),
            nn.ReLU(),
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                CasVitStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth=depths[i],
                    downsample=i > 0,
                    mlp_ratio=mlp_ratio,
                    drop_path_rates=rates[i].tolist(),
                    proj_drop=proj_drop_rate,
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
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._classifier(num_classes, **dd)
        # the distillation head of the paper's DeiT-style training; its logits are averaged in
        self.head_dist = self._classifier(num_classes, **dd)
        self.distilled_training = False  # set True to get both heads' logits when training
        self.apply(_init_weights)

    def _classifier(self, num_classes: int, device=None, dtype=None) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return nn.Linear(self.num_features, num_classes, device=device, dtype=dtype)

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        self.distilled_training = enable

    @torch.jit.ignore
    def get_classifier(self) -> tuple[nn.Module, nn.Module]:
        return self.head, self.head_dist

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(
                pool_type=global_pool, flatten=bool(global_pool)
            )
        self.head = self._classifier(num_classes, **dd).train(self.training)
        self.head_dist = self._classifier(num_classes, **dd).train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        if pre_logits:
            return x
        logits, logits_dist = self.head(x), self.head_dist(x)
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return logits, logits_dist  # the distillation loss needs both
        return (logits + logits_dist) / 2


def _init_weights(module: nn.Module) -> None:
    # as the official code: truncated normal for the classifiers, PyTorch's default for convs
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_cas_vit(variant: str, pretrained: bool = False, **kwargs) -> CasVit:
    return build_model_with_cfg(
        CasVit,
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
        "classifier": ("head", "head_dist"),
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "cas_vit_xs": _cfg(),
        "cas_vit_s": _cfg(),
        "cas_vit_m": _cfg(),
        "cas_vit_t": _cfg(),
    }
)


@register_model
def cas_vit_xs(pretrained: bool = False, **kwargs) -> CasVit:
    args = dict(depths=(2, 2, 4, 2), dims=(48, 56, 112, 220))
    return _create_cas_vit("cas_vit_xs", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def cas_vit_s(pretrained: bool = False, **kwargs) -> CasVit:
    args = dict(depths=(3, 3, 6, 3), dims=(48, 64, 128, 256))
    return _create_cas_vit("cas_vit_s", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def cas_vit_m(pretrained: bool = False, **kwargs) -> CasVit:
    args = dict(depths=(3, 3, 6, 3), dims=(64, 96, 192, 384))
    return _create_cas_vit("cas_vit_m", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def cas_vit_t(pretrained: bool = False, **kwargs) -> CasVit:
    args = dict(depths=(3, 3, 6, 3), dims=(96, 128, 256, 512))
    return _create_cas_vit("cas_vit_t", pretrained=pretrained, **dict(args, **kwargs))
