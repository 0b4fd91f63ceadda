"""IdentityFormer and RandFormer: the MetaFormer baselines that timm does not ship.

`MetaFormer Baselines for Vision`
    Yu et al., TPAMI 2024, arXiv 2210.13452, https://github.com/sail-sg/metaformer

Both are timm's own `MetaFormer` (ConvFormer, CAFormer and PoolFormerV2 are timm's models) with
the S12 layout of PoolFormerV2: depths 2-2-6-2, widths 64-128-320-512, one-group norms without
bias in the blocks, StarReLU MLPs, res-scale in the last two stages and a linear classifier.

- IdentityFormer: identity mapping as the token mixer in every stage.
- RandFormer: identity in the first two stages, frozen random token mixing in the last two,
  drawn for the token grids of the 224 input (14 x 14 and 7 x 7) and resampled to other sizes
  (`zoo.operators.metaformer_mixers.RandomMixing`).

Parameter counts at 224 with the 1000-class head, against the model table of the official
repository (README; the paper's ImageNet-1K table gives the same figures):

    identityformer_s12   11.89M          (table: 11.9M)
    randformer_s12       11.89M + 0.24M  (table: 11.9M + 0.2M frozen)

The random matrices are buffers, outside `parameters()`, as the table counts them apart.
"""

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.metaformer import GroupNorm1NoBias, MetaFormer, checkpoint_filter_fn
from torch import nn

from zoo.operators.metaformer_mixers import RandomMixing

__all__ = ["RandomMixing7", "RandomMixing14"]


class RandomMixing14(RandomMixing):
    """Random mixing drawn for 14 x 14 tokens: RandFormer's third stage at 224."""

    def __init__(self, dim: int, proj_drop: float = 0.0, device=None, dtype=None):
        super().__init__(dim, grid_size=14, proj_drop=proj_drop, device=device, dtype=dtype)


class RandomMixing7(RandomMixing):
    """Random mixing drawn for 7 x 7 tokens: RandFormer's fourth stage at 224."""

    def __init__(self, dim: int, proj_drop: float = 0.0, device=None, dtype=None):
        super().__init__(dim, grid_size=7, proj_drop=proj_drop, device=device, dtype=dtype)


def _create_metaformer_baseline(variant: str, pretrained: bool = False, **kwargs) -> MetaFormer:
    args = dict(
        depths=(2, 2, 6, 2),
        dims=(64, 128, 320, 512),
        norm_layers=GroupNorm1NoBias,
        use_mlp_head=False,
    )
    return build_model_with_cfg(
        MetaFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,  # timm's map from the official key names
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


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "identityformer_s12": _cfg(),
        "randformer_s12": _cfg(),
    }
)


@register_model
def identityformer_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    args = dict(token_mixers=nn.Identity)
    return _create_metaformer_baseline("identityformer_s12", pretrained, **dict(args, **kwargs))


@register_model
def randformer_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    args = dict(token_mixers=(nn.Identity, nn.Identity, RandomMixing14, RandomMixing7))
    return _create_metaformer_baseline("randformer_s12", pretrained, **dict(args, **kwargs))
