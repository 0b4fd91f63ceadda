"""The classifiers of the weighted-convolution paper: ResNet-18 and VGG-16 with weighted convs.

`Optimal Weighted Convolution for Classification and Denosing`
    Cammarasana and Patanè, 2025, arXiv 2505.24558,
    https://github.com/cammarasana123/weightedConvolution2.0

The paper swaps the convolutions of standard classifiers (VGG, ResNet; CIFAR-100) for weighted
convolutions (zoo.operators.weighted_conv) and compares with the same networks left plain. Every
square odd k x k convolution with k > 1 becomes a weighted one with the density of its kernel
size; 1x1 convolutions (whose density is 1) and the fully connected layers are left as they are.
`weighted=False` builds the plain baseline from the same code.

The official repository ships the operator only, not the classifiers, so the networks are timm's
own ResNet-18 and VGG-16 (configuration D, the standard torchvision layout). The weighted
convolution keeps nn.Conv2d's parameters, so the counts are those of the original papers, at 224
with the 1000-class head:

    weighted_resnet18   11.69M   (He et al., CVPR 2016, arXiv 1512.03385: the 18-layer network
                                  of Table 1, 11.7M as torchvision and timm count it)
    weighted_vgg16     138.36M   (Simonyan and Zisserman, ICLR 2015, arXiv 1409.1556, Table 2: 138M)

Which VGG and ResNet depths the paper trained, and its tuned density values, are not in the
official repository; these are the standard depths and the repository's default densities.
"""

from collections.abc import Sequence

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from timm.models.vgg import VGG
from timm.models.vgg import cfgs as vgg_layer_cfgs

from zoo.operators.weighted_conv import convert_to_weighted_conv

__all__ = ["WeightedResNet", "WeightedVGG"]


class WeightedResNet(ResNet):
    """timm's ResNet with its k x k (k > 1) convolutions weighted.

    Args:
        weighted: Use weighted convolutions (False: the plain network).
        densities: Density values per kernel size, overriding the defaults of
            zoo.operators.weighted_conv.DEFAULT_DENSITIES.
        **resnet_args: timm's ResNet arguments (an unknown one raises TypeError there).
    """

    def __init__(
        self,
        weighted: bool = True,
        densities: dict[int, Sequence[float]] | None = None,
        **resnet_args,
    ):
        super().__init__(**resnet_args)
        self.weighted = weighted
        if weighted:
            convert_to_weighted_conv(self, densities)


class WeightedVGG(VGG):
    """timm's VGG with the convolutions of its feature extractor weighted.

    The 7x7 convolution of the pre-logits MLP is VGG's first fully connected layer written as a
    convolution, so it stays plain.

    Args:
        weighted: Use weighted convolutions (False: the plain network).
        densities: Density values per kernel size, overriding the defaults.
        **vgg_args: timm's VGG arguments (an unknown one raises TypeError there).
    """

    def __init__(
        self,
        weighted: bool = True,
        densities: dict[int, Sequence[float]] | None = None,
        **vgg_args,
    ):
        super().__init__(**vgg_args)
        self.weighted = weighted
        if weighted:
            convert_to_weighted_conv(self.features, densities)


def _create_weighted_resnet(variant: str, pretrained: bool = False, **kwargs) -> WeightedResNet:
    return build_model_with_cfg(
        WeightedResNet,
        variant,
        pretrained,
        # the four stages (strides 4-32); index 0 would be the stride-2 stem
        feature_cfg=dict(out_indices=(1, 2, 3, 4)),
        **kwargs,
    )


def _create_weighted_vgg(variant: str, pretrained: bool = False, **kwargs) -> WeightedVGG:
    return build_model_with_cfg(
        WeightedVGG,
        variant,
        pretrained,
        # the outputs of conv blocks 3-5 and the last pool (strides 4-32)
        feature_cfg=dict(flatten_sequential=True, out_indices=(2, 3, 4, 5)),
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
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "weighted_resnet18": _cfg(),
        "weighted_vgg16": _cfg(first_conv="features.0", classifier="head.fc"),
    }
)


@register_model
def weighted_resnet18(pretrained: bool = False, **kwargs) -> WeightedResNet:
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create_weighted_resnet("weighted_resnet18", pretrained, **dict(args, **kwargs))


@register_model
def weighted_vgg16(pretrained: bool = False, **kwargs) -> WeightedVGG:
    args = dict(cfg=vgg_layer_cfgs["vgg16"])
    return _create_weighted_vgg("weighted_vgg16", pretrained, **dict(args, **kwargs))
