"""ResNet-50 with Frequency-Adaptive Dilated Convolutions in its last three stages.

`Frequency-Adaptive Dilated Convolution for Semantic Segmentation`
    Chen et al., CVPR 2024, arXiv 2403.05369, https://github.com/Linwei-Chen/FADC

The paper's ResNet-50 + FADC (its UPerNet / ADE20K model) is mmseg's ResNetV1c-50 (the deep
3x3 stem of 32-32-64 channels, stride in the 3x3 conv) with the 3x3 conv of every bottleneck of
stages conv3_x-conv5_x (timm's layer2-layer4) replaced by FADC, the stride-2 ones included, with
one deformable group, replicate padding, AdaKern on both kernel parts and FreqSelect with the
cut-offs 1/2, 1/4, 1/8 (the official config `upernet_R50_FADC_512_160k_ade20k.py`). Here it is
built on timm's ResNet (`resnet50c` is the same ResNetV1c layout) and Bottleneck.

The paper gives no parameter count for the backbone. At 224 with the 1000-class head ours has
26.50M parameters (26,502,641): plain ResNet-50 has 25.56M and ResNet-50-C 25.58M, to which the
13 FADC layers add 0.93M, mostly AdaKern's two channel attentions per layer. The count is the
official modules' parameter for parameter (their layer shapes summed in tests/zoo/test_fadc.py).
"""

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from zoo.operators.fadc import FrequencyAdaptiveDilatedConv

__all__ = ["FADCBottleneck", "FADCResNet"]


class FADCBottleneck(Bottleneck):
    """timm's Bottleneck with its 3x3 conv replaced by FADC (same stride, dilation, groups)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        conv = self.conv2
        self.conv2 = FrequencyAdaptiveDilatedConv(
            conv.in_channels,
            conv.out_channels,
            kernel_size=conv.kernel_size[0],
            stride=conv.stride[0],
            padding=conv.padding[0],
            dilation=conv.dilation[0],
            groups=conv.groups,
            bias=False,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )


class FADCResNet(ResNet):
    """timm's ResNet whose FADC layers keep the official initialisation.

    timm's ResNet initialises every nn.Conv2d with Kaiming's rule, the inner convs of FADC
    included; these must start at zero (identity FreqSelect, the initial dilation, constant
    modulation), so they are reset afterwards. The FADC kernel itself takes the ResNet rule.
    """

    def init_weights(self, zero_init_last: bool = True) -> None:
        super().init_weights(zero_init_last=zero_init_last)
        for module in self.modules():
            if isinstance(module, FrequencyAdaptiveDilatedConv):
                module.reset_parameters()
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def _create_resnet_fadc(variant: str, pretrained: bool = False, **kwargs) -> FADCResNet:
    return build_model_with_cfg(
        FADCResNet,
        variant,
        pretrained,
        # the four stages (strides 4-32); index 0 would be the stride-2 stem
        feature_cfg=dict(out_indices=(1, 2, 3, 4)),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "conv1.0",
        "classifier": "fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"resnet50_fadc": _cfg()})


@register_model
def resnet50_fadc(pretrained: bool = False, **kwargs) -> FADCResNet:
    args = dict(
        block=(Bottleneck, FADCBottleneck, FADCBottleneck, FADCBottleneck),
        layers=(3, 4, 6, 3),
        stem_width=32,
        stem_type="deep",
    )
    return _create_resnet_fadc("resnet50_fadc", pretrained, **dict(args, **kwargs))
