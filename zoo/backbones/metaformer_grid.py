"""The operator grid: one MetaFormer-S12 skeleton, any token mixer of the zoo.

`MetaFormer Baselines for Vision`
    Yu et al., TPAMI 2024, arXiv 2210.13452, https://github.com/sail-sg/metaformer

Operators are only comparable at equal depth, width and training recipe. The grid takes timm's
own `MetaFormer` (stem, four stages of norm -> token mixer -> norm -> StarReLU MLP, head) with the
PoolFormerV2-S12 settings (depths 2-2-6-2, widths 64-128-320-512, GroupNorm without bias, res-scale
in the last two stages) and swaps only the token mixer, chosen by name from
`zoo.operators.registry`. So `metaformer_s12_pooling` is PoolFormerV2-S12 itself.

    timm.create_model("metaformer_s12", mixer="aff")   # any registered mixer
    timm.create_model("metaformer_s12_aff")                   # the same, as a registry entry
"""

from contextlib import nullcontext

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.metaformer import MetaFormer
from torch import nn

# importing the package imports every operator module, so all mixers are registered here
from zoo.operators import create_token_mixer, list_token_mixers
from zoo.operators.norm_act import get_act_layer, get_norm_layer

__all__ = ["GridTokenMixer"]


class GridTokenMixer(nn.Module):
    """Adapts a registered token mixer to the interface of timm's MetaFormer blocks.

    timm's blocks build `token_mixer(dim=, proj_drop=, device=, dtype=, **kwargs)`; the zoo's
    mixers take only `dim`, so device and dtype are applied around their construction.
    """

    def __init__(
        self,
        dim: int,
        mixer: str = "pooling",
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        with torch.device(device) if device is not None else nullcontext():
            self.mixer = create_token_mixer(mixer, dim)
        if dtype is not None:
            self.mixer.to(dtype)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_drop(self.mixer(x))


def _create_metaformer_grid(
    variant: str,
    pretrained: bool = False,
    norm: str = "groupnorm1",
    act: str = "starrelu",
    **kwargs,
) -> MetaFormer:
    """`norm` and `act` name the blocks' norm layer and MLP activation (zoo.operators.norm_act)."""
    args = dict(
        depths=(2, 2, 6, 2),
        dims=(64, 128, 320, 512),
        token_mixers=GridTokenMixer,
        norm_layers=get_norm_layer(norm),
        mlp_act=get_act_layer(act),
        use_mlp_head=False,
    )
    return build_model_with_cfg(
        MetaFormer,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **dict(args, **kwargs),
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv",
        "classifier": "head.fc",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {"metaformer_s12": _cfg(), **{f"metaformer_s12_{m}": _cfg() for m in list_token_mixers()}}
)


@register_model
def metaformer_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    """MetaFormer-S12 with the token mixer named by `mixer=` (default: pooling)."""
    return _create_metaformer_grid("metaformer_s12", pretrained=pretrained, **kwargs)


def _register_grid_variant(mixer: str) -> None:
    """Register `metaformer_s12_<mixer>`: a registry entry per operator, for listings and tables."""

    def variant(pretrained: bool = False, **kwargs) -> MetaFormer:
        return _create_metaformer_grid(
            f"metaformer_s12_{mixer}", pretrained=pretrained, **dict(dict(mixer=mixer), **kwargs)
        )

    variant.__name__ = variant.__qualname__ = f"metaformer_s12_{mixer}"
    variant.__module__ = __name__
    variant.__doc__ = f"MetaFormer-S12 with the `{mixer}` token mixer."
    register_model(variant)


for _mixer in list_token_mixers():
    _register_grid_variant(_mixer)
