"""MobileNetV2 with TVConv in place of its depthwise convolutions (the TVConv face model).

`TVConv: Efficient Translation Variant Convolution for Layout-aware Visual Processing`
    Chen et al., CVPR 2022, arXiv 2203.10489, https://github.com/JierunChen/TVConv

The paper's face-recognition backbone: torchvision's MobileNetV2 adapted to 96 x 96 aligned
faces (a stride-1 stem, a 512-channel last conv, output stride 16), with every 3x3 depthwise
conv replaced by a TVConv whose layout is the block's output resolution at 96 x 96 (96 ... 6).
The TVConv settings are those of the official training script: 4 affinity maps, a weight
generator of 64 channels with 3 hidden blocks, no bias. The official face head (BN, pooling,
a 512-d embedding with BN, for an angular-margin loss) is a metric-learning head; here the
backbone ends in timm's classifier head, and tasks add their own heads.

The paper tabulates no parameter counts; at training time they are dominated by the generators'
LayerNorms, which carry an affine map per position (64 x H x W each). Our feature extractor
(stem, blocks, last conv; `num_classes=0`) has exactly the official module's parameters:

    mobilenetv2_tvconv_010   16.10M    mobilenetv2_tvconv_050   29.81M
    mobilenetv2_tvconv_020   19.41M    mobilenetv2_tvconv_100   49.44M
    mobilenetv2_tvconv_030   23.55M

At inference the generated kernels can be computed once (`TVConv.kernel_field`).
"""

import torch
from timm.layers import ClassifierHead, DropPath, make_divisible, to_2tuple
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from torch import nn

from zoo.backbones._hierarchical import ConvHeadNet
from zoo.operators.tvconv import TVConv

__all__ = ["TVConvMobileNetV2"]

# (expansion t, channels c, blocks n, stride s) per stage: MobileNetV2 with a stride-1 stem
FACE_BLOCK_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu6(
    in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, device=None, dtype=None
) -> nn.Sequential:
    dd = {"device": device, "dtype": dtype}
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False, **dd),
        nn.BatchNorm2d(out_chs, **dd),
        nn.ReLU6(inplace=True),
    )


class TVConvInvertedResidual(nn.Module):
    """1x1 expand -> TVConv -> BN -> ReLU6 -> 1x1 project -> BN, residual when shapes allow."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        expand_ratio: float,
        layout_size: tuple[int, int],
        affinity_chans: int = 4,
        hidden_chans: int = 64,
        hidden_layers: int = 3,
        tvconv_bias: bool = False,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        hidden = int(round(in_chs * expand_ratio))
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = _conv_bn_relu6(in_chs, hidden, **dd) if expand_ratio != 1 else nn.Identity()
        self.conv_dw = TVConv(
            hidden,
            stride=stride,
            layout_size=layout_size,
            affinity_chans=affinity_chans,
            hidden_chans=hidden_chans,
            hidden_layers=hidden_layers,
            bias=tvconv_bias,
            **dd,
        )
        self.bn_dw = nn.BatchNorm2d(hidden, **dd)
        self.act_dw = nn.ReLU6(inplace=True)
        self.conv_pwl = nn.Conv2d(hidden, out_chs, 1, bias=False, **dd)
        self.bn_pwl = nn.BatchNorm2d(out_chs, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act_dw(self.bn_dw(self.conv_dw(self.conv_pw(x))))
        y = self.bn_pwl(self.conv_pwl(y))
        return x + self.drop_path(y) if self.has_skip else y


class TVConvMobileNetV2Stage(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.grad_checkpointing = False
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class TVConvMobileNetV2(ConvHeadNet):
    """MobileNetV2 with translation variant depthwise convolutions.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        width_mult: Width multiplier of every layer but the last conv.
        img_size: The nominal input size, which sets each TVConv's layout (96 for the faces);
            other sizes run with the kernel fields resized.
        block_settings: (expansion, channels, blocks, stride) per stage.
        stem_chs: Stem channels before the width multiplier.
        last_chs: Channels of the last 1x1 conv (scaled only by width multipliers above 1).
        affinity_chans, hidden_chans, hidden_layers, tvconv_bias: TVConv settings.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        width_mult: float = 1.0,
        img_size: int | tuple[int, int] = 96,
        block_settings: tuple[tuple[int, int, int, int], ...] = FACE_BLOCK_SETTINGS,
        stem_chs: int = 32,
        last_chs: int = 512,
        affinity_chans: int = 4,
        hidden_chans: int = 64,
        hidden_layers: int = 3,
        tvconv_bias: bool = False,
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
        in_chs = make_divisible(stem_chs * width_mult, 8)
        self.stem = _conv_bn_relu6(in_chans, in_chs, kernel_size=3, **dd)

        layout = to_2tuple(img_size)
        reduction = 1
        num_blocks = sum(setting[2] for setting in block_settings)
        rates = torch.linspace(0, drop_path_rate, num_blocks, device="cpu").tolist()
        stages, self.feature_info = [], []
        for expansion, channels, depth, stride in block_settings:
            out_chs = make_divisible(channels * width_mult, 8)
            blocks = []
            for index in range(depth):
                block_stride = stride if index == 0 else 1
                # a 3x3 conv with padding 1 maps n pixels to ceil(n / stride)
                layout = tuple((size - 1) // block_stride + 1 for size in layout)
                blocks.append(
                    TVConvInvertedResidual(
                        in_chs,
                        out_chs,
                        block_stride,
                        expansion,
                        layout,
                        affinity_chans=affinity_chans,
                        hidden_chans=hidden_chans,
                        hidden_layers=hidden_layers,
                        tvconv_bias=tvconv_bias,
                        drop_path=rates.pop(0),
                        **dd,
                    )
                )
                in_chs = out_chs
            reduction *= stride
            stages.append(TVConvMobileNetV2Stage(blocks))
            self.feature_info.append(
                dict(num_chs=out_chs, reduction=reduction, module=f"stages.{len(stages) - 1}")
            )
        self.stages = nn.Sequential(*stages)
        self.num_features = make_divisible(last_chs * max(1.0, width_mult), 8)
        self.conv_head = _conv_bn_relu6(in_chs, self.num_features, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        self.head_hidden_size = self.num_features
        named_apply(_init_weights, self)


def _init_weights(module: nn.Module, name: str = "") -> None:
    """The official initialisation (TVConv's affinity maps start at ones on their own)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _create_mobilenetv2_tvconv(
    variant: str, pretrained: bool = False, **kwargs
) -> TVConvMobileNetV2:
    return build_model_with_cfg(
        TVConvMobileNetV2,
        variant,
        pretrained,
        # the stage ends at strides 2, 4, 8, 16 (the stem keeps the full resolution)
        feature_cfg=dict(out_indices=(1, 2, 4, 6), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 96, 96),
        "pool_size": (6, 6),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "stem.0",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "mobilenetv2_tvconv_010": _cfg(),
        "mobilenetv2_tvconv_020": _cfg(),
        "mobilenetv2_tvconv_030": _cfg(),
        "mobilenetv2_tvconv_050": _cfg(),
        "mobilenetv2_tvconv_100": _cfg(),
    }
)


@register_model
def mobilenetv2_tvconv_010(pretrained: bool = False, **kwargs) -> TVConvMobileNetV2:
    args = dict(width_mult=0.1)
    return _create_mobilenetv2_tvconv("mobilenetv2_tvconv_010", pretrained, **dict(args, **kwargs))


@register_model
def mobilenetv2_tvconv_020(pretrained: bool = False, **kwargs) -> TVConvMobileNetV2:
    args = dict(width_mult=0.2)
    return _create_mobilenetv2_tvconv("mobilenetv2_tvconv_020", pretrained, **dict(args, **kwargs))


@register_model
def mobilenetv2_tvconv_030(pretrained: bool = False, **kwargs) -> TVConvMobileNetV2:
    args = dict(width_mult=0.3)
    return _create_mobilenetv2_tvconv("mobilenetv2_tvconv_030", pretrained, **dict(args, **kwargs))


@register_model
def mobilenetv2_tvconv_050(pretrained: bool = False, **kwargs) -> TVConvMobileNetV2:
    args = dict(width_mult=0.5)
    return _create_mobilenetv2_tvconv("mobilenetv2_tvconv_050", pretrained, **dict(args, **kwargs))


@register_model
def mobilenetv2_tvconv_100(pretrained: bool = False, **kwargs) -> TVConvMobileNetV2:
    args = dict(width_mult=1.0)
    return _create_mobilenetv2_tvconv("mobilenetv2_tvconv_100", pretrained, **dict(args, **kwargs))
