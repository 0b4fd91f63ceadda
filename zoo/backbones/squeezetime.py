"""SqueezeTime: a 2D network for video, the clip's time axis squeezed into the channels.

`No Time to Waste: Squeeze Time into Channel for Mobile Video Understanding`
    Zhai, Li, Tang, Chen and Wang, arXiv 2405.08344, https://github.com/xinghaochen/SqueezeTime

A clip (B, C, T, H, W) is viewed as a (B, C * T, H, W) image (`in_chans = 3 * T`; the paper uses
T = 16 frames, 48 channels) and runs through a ResNet-50-shaped 2D network whose 3x3 convolutions
are Channel-Time Learning modules (zoo/operators/ctl.py): a 5x5 stride-2 stem and a max pool,
then four stages of 3, 4, 6, 3 bottleneck CTL blocks, widths 64, 128, 256, 512 (x4 out), each
stage after the first starting with a depthwise 2x2 stride-2 conv; global pooling, dropout and a
linear classifier. The position embeddings of the CTL gates are 56, 28, 14, 7 on a side (the
maps at 224 px input) and are resized to other inputs.

With `in_chans=3` (the timm default, and what timm's contract suite builds) it is an image
network, T = 1, and serves every image task of the zoo; its pretrained cfg carries the note
`TIME_IN_CHANNELS_NOTE`, by which the surgical video task knows to fold a clip's frames into its
channels (`folds_time_into_channels`).

Parameters with the 400-class Kinetics head, counted on `timm.create_model("squeezetime_50",
in_chans=48, num_classes=400)`: 29.71M (29.63M at in_chans=3). The same count as the official
`generate_model(50, n_input_channels=48)` layer by layer (same layers, same shapes); the paper's
efficiency table was not reachable offline to cross-check its rounded figure.

Our own implementation; the facts (depths, widths, the stem, the depthwise downsampling before
each first block, the CTL layout and position sizes) follow the official repository
(Apache-2.0).
"""

import torch
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from torch import nn

from zoo.operators.ctl import ChannelTimeLearning

from ._cfg_notes import has_cfg_note
from ._hierarchical import NormHeadNet

__all__ = ["TIME_IN_CHANNELS_NOTE", "SqueezeTime", "folds_time_into_channels"]

#: In the `notes` of the pretrained cfg of a network that takes a clip's frames as channels.
TIME_IN_CHANNELS_NOTE = "time_in_channels"


def folds_time_into_channels(name: str) -> bool:
    """Whether timm model `name` takes a clip as (B, C * T, H, W) (by its pretrained cfg note)."""
    return has_cfg_note(name, TIME_IN_CHANNELS_NOTE)


class CTLBottleneck(nn.Module):
    """1x1 conv, CTL, 1x1 conv (x4 wider), each with BN, ReLU between; residual, then ReLU."""

    expansion = 4

    def __init__(self, in_chs: int, mid_chs: int, pos_size: int = 7, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        out_chs = mid_chs * self.expansion
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(mid_chs, **dd)
        self.ctl = ChannelTimeLearning(mid_chs, mid_chs, pos_size, **dd)
        self.bn2 = nn.BatchNorm2d(mid_chs, **dd)
        self.conv3 = nn.Conv2d(mid_chs, out_chs, 1, bias=False, **dd)
        self.bn3 = nn.BatchNorm2d(out_chs, **dd)
        self.act = nn.ReLU(inplace=True)
        if in_chs != out_chs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, bias=False, **dd), nn.BatchNorm2d(out_chs, **dd)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.ctl(out)))
        out = self.bn3(self.conv3(out))
        return self.act(out + self.shortcut(x))


class SqueezeTimeStage(nn.Module):
    """An optional depthwise 2x2 stride-2 downsample, then CTL bottleneck blocks."""

    def __init__(self, in_chs: int, mid_chs: int, depth: int, stride: int, pos_size: int,
                 device=None, dtype=None):  # fmt: skip
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        if stride > 1:
            # the official blocks downsample before the residual split: the same as here
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, stride, stride=stride, groups=in_chs, **dd),
                nn.BatchNorm2d(in_chs, **dd),
            )
        else:
            self.downsample = nn.Identity()
        out_chs = mid_chs * CTLBottleneck.expansion
        self.blocks = nn.Sequential(*[
            CTLBottleneck(in_chs if i == 0 else out_chs, mid_chs, pos_size, **dd)
            for i in range(depth)
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class SqueezeTime(NormHeadNet):
    """SqueezeTime.

    Args:
        in_chans: Input channels: 3 * frames for a clip (B, 3 * T, H, W), 3 for images.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: CTL blocks per stage.
        widths: Bottleneck widths per stage (the stage outputs are 4x wider).
        strides: Spatial stride of each stage.
        pos_sizes: Side of the CTL position embeddings per stage.
        stem_chs: Channels of the stem.
        drop_rate: Dropout before the classifier (the paper's head uses 0.5).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (3, 4, 6, 3),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        strides: tuple[int, ...] = (1, 2, 2, 2),
        pos_sizes: tuple[int, ...] = (56, 28, 14, 7),
        stem_chs: int = 64,
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_chs, 5, stride=2, padding=2, bias=False, **dd),
            nn.BatchNorm2d(stem_chs, **dd),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_chs, reduction = [], stem_chs, 4
        self.feature_info = []
        for i, (depth, width, stride, pos) in enumerate(zip(depths, widths, strides, pos_sizes)):
            stages.append(SqueezeTimeStage(in_chs, width, depth, stride, pos, **dd))
            in_chs, reduction = width * CTLBottleneck.expansion, reduction * stride
            self.feature_info.append(
                dict(num_chs=in_chs, reduction=reduction, module=f"stages.{i}")
            )
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = in_chs
        self.norm = nn.Identity()  # every block ends in its own BN
        self.head = ClassifierHead(in_chs, num_classes, pool_type=global_pool,
                                   drop_rate=drop_rate, **dd)  # fmt: skip
        self.apply(_init_weights)

    @property
    def num_frames(self) -> int:
        """Frames per clip this network takes (`in_chans // 3`; 1 for an image)."""
        return max(self.in_chans // 3, 1)


def _init_weights(module: nn.Module) -> None:
    """The official initialisation: Kaiming fan-out convolutions, unit BN; timm's linear."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.01)  # the official head's init_std
        nn.init.zeros_(module.bias)


def _create_squeezetime(variant: str, pretrained: bool = False, **kwargs) -> SqueezeTime:
    return build_model_with_cfg(
        SqueezeTime,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 400,
        # timm's contract builds 3-channel models; a clip of T frames takes in_chans = 3 * T
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.0",
        "classifier": "head.fc",
        "paper_ids": "arXiv:2405.08344",
        "notes": (TIME_IN_CHANNELS_NOTE,),
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"squeezetime_50": _cfg(), "test_squeezetime": _cfg()})


@register_model
def test_squeezetime(pretrained: bool = False, **kwargs) -> SqueezeTime:
    args = dict(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), stem_chs=16)
    return _create_squeezetime("test_squeezetime", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def squeezetime_50(pretrained: bool = False, **kwargs) -> SqueezeTime:
    args = dict(depths=(3, 4, 6, 3), widths=(64, 128, 256, 512))
    return _create_squeezetime("squeezetime_50", pretrained=pretrained, **dict(args, **kwargs))
