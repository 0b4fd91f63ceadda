"""Image restoration networks in timm's registry: ESPCN, CFSR, DnCNN, MIRNet and the mixer body.

The networks live in zoo/restoration/ (one file per paper); this module gives them timm names so
that configs select them like any backbone (`backbone=cfsr`) and `timm.create_model` builds them:

    timm.create_model("cfsr", scale=4)            # 3-channel x4 CFSR
    timm.create_model("dncnn", in_chans=1)        # grey-scale DnCNN-S
    timm.create_model("mixer_body", mixer="gnconv", scale=2)

They are NOT classifiers: no `num_classes`, no pooled head, no `features_only` pyramid. Their
contract: pixels in [0, 1] of shape (B, in_chans, h, w) -> (B, in_chans, h * scale, w * scale),
any h, w >= 1, built on any device (`meta` included), attributes `in_chans`, `scale` and
`restoration_net = True`; their pretrained cfg carries the note `RESTORATION_NOTE`, so a task can
tell them from encoders by name, before building anything. Asking one for a classifier or a
feature pyramid raises a ValueError that says where it runs (a task that needs one refuses them
with it, before training).

timm's own model suite (../shared/tools/timm_contract) tests classifiers and does not apply:
their contract is tests/zoo/test_restoration_nets.py::test_restoration_contract.
"""

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from zoo.restoration import CFSR, ESPCN, DnCNN, MIRNet, MixerBody

from ._cfg_notes import has_cfg_note

__all__ = ["RESTORATION_NOTE", "is_restoration_net"]

#: In the `notes` of every restoration network's pretrained cfg.
RESTORATION_NOTE = "image_restoration"


def is_restoration_net(name: str) -> bool:
    """Whether the timm model `name` is one of these image -> image networks (by its cfg note)."""
    return has_cfg_note(name, RESTORATION_NOTE)


_CLASSIFIER_ARGS = ("num_classes", "global_pool", "features_only", "out_indices", "drop_rate")


def _create_restoration_net(cls: type[nn.Module], variant: str, pretrained: bool = False, **kwargs):
    asked = [key for key in _CLASSIFIER_ARGS if kwargs.get(key) not in (None, 0, False)]
    if asked:
        raise ValueError(
            f"{variant} is an image restoration network (image -> image), not a classifier or "
            f"feature extractor: it takes no {', '.join(asked)}. Use it with "
            "task=super_resolution or task=denoising."
        )
    for key in _CLASSIFIER_ARGS:
        kwargs.pop(key, None)
    # the cfg's num_classes (0) is filtered out again after timm fills it in
    return build_model_with_cfg(cls, variant, pretrained, kwargs_filter=("num_classes",), **kwargs)


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 0,
        "input_size": (3, 64, 64),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        # restoration networks see raw pixels in [0, 1]
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "first_conv": "",
        "classifier": "",
        "notes": (RESTORATION_NOTE,),
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architectures' defaults only
default_cfgs = generate_default_cfgs(
    {
        "espcn": _cfg(
            input_size=(1, 64, 64), first_conv="features.0", paper_ids="arXiv:1609.05158"
        ),
        "cfsr": _cfg(first_conv="conv_first", paper_ids="arXiv:2401.05633"),
        "dncnn": _cfg(input_size=(1, 64, 64), first_conv="body.0", paper_ids="arXiv:1608.03981"),
        "dncnn_b": _cfg(input_size=(1, 64, 64), first_conv="body.0", paper_ids="arXiv:1608.03981"),
        "mirnet_tiny": _cfg(first_conv="conv_in", paper_ids="arXiv:2003.06792"),
        "mirnet": _cfg(first_conv="conv_in", paper_ids="arXiv:2003.06792"),
        "mixer_body": _cfg(first_conv="conv_first"),
    }
)


@register_model
def espcn(pretrained=False, **kwargs) -> ESPCN:
    return _create_restoration_net(ESPCN, "espcn", pretrained, **kwargs)


@register_model
def cfsr(pretrained=False, **kwargs) -> CFSR:
    return _create_restoration_net(CFSR, "cfsr", pretrained, **kwargs)


@register_model
def dncnn(pretrained=False, **kwargs) -> DnCNN:
    args = dict(depth=17)
    return _create_restoration_net(DnCNN, "dncnn", pretrained, **dict(args, **kwargs))


@register_model
def dncnn_b(pretrained=False, **kwargs) -> DnCNN:
    args = dict(depth=20)
    return _create_restoration_net(DnCNN, "dncnn_b", pretrained, **dict(args, **kwargs))


@register_model
def mirnet_tiny(pretrained=False, **kwargs) -> MIRNet:
    args = dict(dim=16, groups=1, blocks=1)
    return _create_restoration_net(MIRNet, "mirnet_tiny", pretrained, **dict(args, **kwargs))


@register_model
def mirnet(pretrained=False, **kwargs) -> MIRNet:
    args = dict(dim=64, groups=3, blocks=2)
    return _create_restoration_net(MIRNet, "mirnet", pretrained, **dict(args, **kwargs))


@register_model
def mixer_body(pretrained=False, **kwargs) -> MixerBody:
    return _create_restoration_net(MixerBody, "mixer_body", pretrained, **kwargs)
