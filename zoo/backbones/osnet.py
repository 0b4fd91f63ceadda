"""OSNet: a lightweight re-ID backbone of omni-scale residual bottlenecks, and OSNet-AIN.

`Omni-Scale Feature Learning for Person Re-Identification`
    Zhou et al., ICCV 2019, arXiv 1905.00953, https://github.com/KaiyangZhou/deep-person-reid
`Learning Generalisable Omni-Scale Representations for Person Re-Identification`
    Zhou et al., TPAMI 2021, arXiv 1910.06827 (OSNet-AIN)

Architecture (paper Table 1, width x1.0): conv 7x7/2 (64) and max-pool 3x3/2; three stages of
two omni-scale bottlenecks (256, 384, 512 channels), a transition (1x1 conv + 2x2 avg-pool) after
the first two; a final 1x1 conv (512); global average pool; a 512-d fc embedding (Linear, BN,
ReLU) that is the re-ID feature; and the identity classifier. Width multipliers scale every
channel count but not the 512-d embedding.

Parameter counts. The paper and the official model zoo count "only layers used at test time":
everything up to the 512-d embedding, without the identity classifier, whose size depends on the
training set. We match that count with `num_classes=0` (which keeps the embedding):

    osnet_x0_25       201,864  (table: 0.2M)
    osnet_x0_5        630,034  (table: 0.6M)
    osnet_x0_75     1,285,754  (table: 1.3M)
    osnet_x1_0      2,169,508  (table: 2.2M; paper Table 1 and its width-multiplier table)
    osnet_ain_x1_0  2,169,508  (table: 2.2M; TPAMI paper and official model zoo: IN has BN's
                                parameter count)

With the 1000-class ImageNet classifier of timm's default cfg, add 513,000 to each.

Layout choices (the facts follow the official code, MIT license; the code is our own):
- The transitions are the `downsample` of the next stage (timm style), so `feature_info` gives the
  stem (64 @ /2) and the three stages (256 @ /4, 384 @ /8, 512 @ /16): the last stage has no
  transition, and the final 1x1 conv is left out of the feature maps (like EfficientNet's head
  conv); `forward_features` includes it.
- The embedding is a 1x1 conv + BN + ReLU on the pooled map: the same parameters and function
  as the official Linear + BatchNorm1d + ReLU, and it still works when pooling is disabled.
- The avg-pool of the transitions rounds odd sizes up (`ceil_mode=True`), as the strided convs
  do, so tiny inputs keep at least one pixel; at the paper's 256x128 input nothing changes.
"""

import torch
from timm.layers import SelectAdaptivePool2d, get_device_dtype
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from timm.models._features import feature_take_indices
from torch import nn

from zoo.operators.omni_scale import OmniScaleBlock

__all__ = ["OSNet"]


def _conv1x1_bn_relu(in_chs: int, out_chs: int, **dd) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 1, bias=False, **dd),
        nn.BatchNorm2d(out_chs, **dd),
        nn.ReLU(inplace=True),
    )


class OSNetStem(nn.Module):
    """Conv 7x7 stride 2, then batch norm (instance norm in OSNet-AIN) and ReLU."""

    def __init__(
        self, in_chs: int, out_chs: int, instance_norm: bool = False, device=None, dtype=None
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(in_chs, out_chs, 7, stride=2, padding=3, bias=False, **dd)
        if instance_norm:
            self.norm = nn.InstanceNorm2d(out_chs, affine=True, **dd)
        else:
            self.norm = nn.BatchNorm2d(out_chs, **dd)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class OSNetStage(nn.Module):
    """A downsample (max-pool after the stem, else a transition), then omni-scale bottlenecks."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        downsample: str,
        instance_norm: tuple[bool, ...] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        match downsample:
            case "maxpool":
                self.downsample = nn.MaxPool2d(3, stride=2, padding=1)
            case "transition":
                self.downsample = nn.Sequential(
                    *_conv1x1_bn_relu(in_chs, in_chs, **dd),
                    nn.AvgPool2d(2, stride=2, ceil_mode=True),
                )
            case _:
                raise ValueError(
                    f"downsample must be 'maxpool' or 'transition', got {downsample!r}"
                )
        instance_norm = instance_norm or (False,) * depth
        self.blocks = nn.Sequential(
            *[
                OmniScaleBlock(in_chs if i == 0 else out_chs, out_chs, instance_norm=use_in, **dd)
                for i, use_in in enumerate(instance_norm)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class EmbeddingClassifierHead(nn.Module):
    """Global pool -> embedding (1x1 conv, BN, ReLU) -> dropout -> classifier.

    `forward(x, pre_logits=True)` returns the embedding: OSNet's re-ID feature.

    Args:
        in_features: Channels of the feature map.
        embed_dim: Width of the embedding (0 for none: the pooled features are the pre-logits).
        num_classes: Classifier classes (0 for no classifier).
        pool_type: Global pooling type; '' keeps the map (embedding and classifier act per pixel).
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self,
        in_features: int,
        embed_dim: int,
        num_classes: int,
        pool_type: str = "avg",
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.global_pool = SelectAdaptivePool2d(pool_type=pool_type)
        pooled = in_features * self.global_pool.feat_mult()
        if embed_dim:
            self.embed = nn.Sequential(
                nn.Conv2d(pooled, embed_dim, 1, **dd),
                nn.BatchNorm2d(embed_dim, **dd),
                nn.ReLU(inplace=True),
            )
            self.num_features = embed_dim
        else:
            self.embed = nn.Identity()
            self.num_features = pooled
        self.flatten = nn.Flatten(1) if pool_type else nn.Identity()
        self.drop = nn.Dropout(drop_rate)
        self.fc = self._classifier(num_classes, **dd)

    def _classifier(self, num_classes: int, **dd) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        if self.global_pool.is_identity():  # unpooled maps: classify each pixel
            return nn.Conv2d(self.num_features, num_classes, 1, **dd)
        return nn.Linear(self.num_features, num_classes, **dd)

    def reset(
        self,
        num_classes: int,
        pool_type: str | None = None,
        reset_other: bool = False,
        in_features: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        """New classifier; `pool_type=None` keeps the pooling, `reset_other` drops the embedding."""
        dd = get_device_dtype(self, device=device, dtype=dtype)
        if in_features is not None:
            if not reset_other and in_features != self.in_features:
                raise ValueError("the embedding's input width can only change with reset_other")
            self.in_features = in_features
        if pool_type is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=pool_type).train(self.training)
            self.flatten = (nn.Flatten(1) if pool_type else nn.Identity()).train(self.training)
        if reset_other:
            self.embed = nn.Identity().train(self.training)
            self.num_features = self.in_features * self.global_pool.feat_mult()
        self.fc = self._classifier(num_classes, **dd).train(self.training)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.embed(self.global_pool(x)))
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class OSNet(nn.Module):
    """OSNet (and OSNet-AIN, with `instance_norm` placements).

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier; the embedding stays).
        global_pool: Global pooling type of the head.
        stem_chs: Channels of the 7x7 stem conv.
        dims: Channels per stage.
        depths: Omni-scale bottlenecks per stage.
        embed_dim: Width of the fc embedding after pooling (the re-ID feature); 0 for none.
        instance_norm: Per stage, per block, close the residual branch with instance norm.
        stem_instance_norm: Instance norm instead of batch norm after the stem conv.
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        stem_chs: int = 64,
        dims: tuple[int, ...] = (256, 384, 512),
        depths: tuple[int, ...] = (2, 2, 2),
        embed_dim: int = 512,
        instance_norm: tuple[tuple[bool, ...], ...] | None = None,
        stem_instance_norm: bool = False,
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        instance_norm = instance_norm or tuple((False,) * d for d in depths)
        if [len(s) for s in instance_norm] != list(depths):
            raise ValueError(f"instance_norm {instance_norm} does not match depths {depths}")

        self.stem = OSNetStem(in_chans, stem_chs, instance_norm=stem_instance_norm, **dd)
        in_dims = (stem_chs, *dims[:-1])
        self.stages = nn.Sequential(
            *[
                OSNetStage(
                    in_dims[i],
                    dims[i],
                    depth=depths[i],
                    downsample="maxpool" if i == 0 else "transition",
                    instance_norm=instance_norm[i],
                    **dd,
                )
                for i in range(len(dims))
            ]
        )
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module="stem")] + [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(dims))
        ]
        self.final_conv = _conv1x1_bn_relu(dims[-1], dims[-1], **dd)
        self.num_features = dims[-1]
        self.head = EmbeddingClassifierHead(
            self.num_features,
            embed_dim,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        named_apply(_init_weights, self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=[(r"^stages\.(\d+)", None), (r"^final_conv", (99999,))]
            if coarse
            else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^final_conv", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, reset_other: bool = False
    ) -> None:
        self.num_classes = num_classes
        self.head.reset(
            num_classes,
            global_pool,
            reset_other=reset_other,
            in_features=self.num_features,
            **get_device_dtype(self),
        )
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the stem and stage outputs in `indices` (NCHW).

        `norm` is accepted for API parity: OSNet has no norm after its last stage.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        # feature index i > 0 is the output of stage i - 1
        stages = (
            self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index]
        )
        for i, stage in enumerate(stages):
            x = stage(x)
            if i + 1 in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self.final_conv(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last index kept, the final conv and the head."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        self.stages = self.stages[:max_index]
        prune_end = max_index < len(self.feature_info) - 1
        if prune_norm or prune_head or prune_end:
            # the final 1x1 conv sits between the last stage and the head: unused once either goes
            self.final_conv = nn.Identity()
        if prune_end:
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "", reset_other=True)
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module, name: str = "") -> None:
    # the official initialisation: He (fan-out) for convs, N(0, 0.01) for the embedding and
    # classifier (Linear layers there; our embedding is the equivalent 1x1 conv)
    if isinstance(module, nn.Conv2d | nn.Linear):
        if name.startswith("head."):
            nn.init.normal_(module.weight, 0, 0.01)
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_osnet(variant: str, pretrained: bool = False, **kwargs) -> OSNet:
    return build_model_with_cfg(
        OSNet,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    # re-ID crops are 256x128 (H x W), the paper's input size
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 256, 128),
        "pool_size": (16, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "osnet_x0_25": _cfg(),
        "osnet_x0_5": _cfg(),
        "osnet_x0_75": _cfg(),
        "osnet_x1_0": _cfg(),
        "osnet_ain_x1_0": _cfg(),
    }
)

# OSNet-AIN's searched placements: IN in the stem and closing these blocks' residual branches
_AIN = dict(
    instance_norm=((True, True), (False, True), (True, False)),
    stem_instance_norm=True,
)


@register_model
def osnet_x0_25(pretrained: bool = False, **kwargs) -> OSNet:
    args = dict(stem_chs=16, dims=(64, 96, 128))
    return _create_osnet("osnet_x0_25", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def osnet_x0_5(pretrained: bool = False, **kwargs) -> OSNet:
    args = dict(stem_chs=32, dims=(128, 192, 256))
    return _create_osnet("osnet_x0_5", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def osnet_x0_75(pretrained: bool = False, **kwargs) -> OSNet:
    args = dict(stem_chs=48, dims=(192, 288, 384))
    return _create_osnet("osnet_x0_75", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def osnet_x1_0(pretrained: bool = False, **kwargs) -> OSNet:
    args = dict(stem_chs=64, dims=(256, 384, 512))
    return _create_osnet("osnet_x1_0", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def osnet_ain_x1_0(pretrained: bool = False, **kwargs) -> OSNet:
    args = dict(stem_chs=64, dims=(256, 384, 512), **_AIN)
    return _create_osnet("osnet_ain_x1_0", pretrained=pretrained, **dict(args, **kwargs))
