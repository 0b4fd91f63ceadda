"""ConvNeXt-dcls: ConvNeXt with its depthwise convolutions replaced by DCLS convolutions.

`Dilated convolution with learnable spacings`
    Khalfaoui-Hassani, Pellegrini, Masquelier, ICLR 2023, arXiv 2112.03740,
    https://github.com/K-H-Ismail/Dilated-Convolution-with-Learnable-Spacings-PyTorch
    (models: https://github.com/K-H-Ismail/ConvNeXt-dcls)

Every 7x7 depthwise conv of every stage becomes a depthwise DCLS conv with 34 elements in a
17x17 window (ConvNeXt-T); the blocks of a stage share one set of positions, which is what keeps
the model at ConvNeXt-T's size ("iso-parameters"): 15 fewer weights per channel and block, 68
position coordinates per channel and stage. Everything else is timm's ConvNeXt.

Parameter count at 224 with the 1000-class head, against the ImageNet-1k table of the paper
(Table 2: 28.6M; the official ConvNeXt-dcls README rounds it to 28M):

    convnext_tiny_dcls   28.59M   (table: 28.6M)

The official recipe trains the positions without weight decay (`no_weight_decay()` names them,
for timm's optimizer factory) and at 5x the learning rate, which belongs to the optimizer
configuration, not the model.

Our own implementation; the facts (which convs are replaced, kernel count 34, dilated kernel size
17, positions shared per stage, their N(0, 0.5) initialisation, bilinear construction) follow the
official repositories (MIT license).
"""

import torch
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt
from torch import nn

from zoo.operators.dcls import DclsConv2d, DclsPositions

__all__ = ["ConvNeXtDcls"]


class ConvNeXtDcls(ConvNeXt):
    """timm's ConvNeXt with depthwise DCLS convolutions whose positions are shared per stage.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        kernel_count: Kernel elements per channel of each DCLS conv.
        dilated_kernel_size: Size of the window the elements move in.
        ls_init_value: Layer-scale initial value (None: no layer scale).
        head_init_scale: Scale on the initial classifier weights.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (3, 3, 9, 3),
        dims: tuple[int, ...] = (96, 192, 384, 768),
        kernel_count: int = 34,
        dilated_kernel_size: int = 17,
        ls_init_value: float | None = 1e-6,
        head_init_scale: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            depths=depths,
            dims=dims,
            ls_init_value=ls_init_value,
            head_init_scale=head_init_scale,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            device=device,
            dtype=dtype,
        )
        dd = {"device": device, "dtype": dtype}
        # swap the depthwise convs ConvNeXt built (a small waste at construction, none after)
        for stage, dim in zip(self.stages, dims):
            positions = DclsPositions(dim, 1, kernel_count, dilated_kernel_size, **dd)
            for block in stage.blocks:
                block.conv_dw = DclsConv2d(
                    dim,
                    dim,
                    kernel_count,
                    dilated_kernel_size,
                    groups=dim,
                    positions=positions,
                    **dd,
                )
                # as ConvNeXt's depthwise convs (and the official ConvNeXt-dcls)
                trunc_normal_(block.conv_dw.weight, std=0.02)
                nn.init.zeros_(block.conv_dw.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        # the official recipe exempts the positions from weight decay, which would pull every
        # element towards the window's centre
        return {name for name, _ in self.named_parameters() if name.endswith("positions.offsets")}


def _create_convnext_dcls(variant: str, pretrained: bool = False, **kwargs) -> ConvNeXtDcls:
    return build_model_with_cfg(
        ConvNeXtDcls,
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
default_cfgs = generate_default_cfgs({"convnext_tiny_dcls": _cfg()})


@register_model
def convnext_tiny_dcls(pretrained: bool = False, **kwargs) -> ConvNeXtDcls:
    args = dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), kernel_count=34)
    return _create_convnext_dcls(
        "convnext_tiny_dcls", pretrained=pretrained, **dict(args, **kwargs)
    )
