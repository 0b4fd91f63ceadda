"""The operator grid: same skeleton, only the token mixer changes."""

import pytest
import timm
import torch

from zoo.operators import list_token_mixers
from zoo.operators.norm_act import get_act_layer, get_norm_layer


def test_pooling_grid_model_is_poolformerv2_s12():
    """The grid's skeleton is exactly PoolFormerV2-S12: same parameters, same function."""
    torch.manual_seed(0)
    ours = timm.create_model("metaformer_s12_pooling", num_classes=10).eval()
    reference = timm.create_model("poolformerv2_s12", num_classes=10).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    # our mixers sit one module deeper (token_mixer.mixer); the pooling mixer has no weights
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_every_mixer_has_a_registered_grid_model():
    assert list_token_mixers()
    for mixer in list_token_mixers():
        assert timm.is_model(f"metaformer_s12_{mixer}")


def test_unknown_mixer_lists_the_mixers():
    with pytest.raises(KeyError, match=r"unknown token mixer 'nope'; choose one of: .*gnconv"):
        timm.create_model("metaformer_s12", mixer="nope")


@pytest.mark.parametrize(
    "norm, act", [("evonorm_s0", "starrelu"), ("evonorm_b0", "gelu"), ("layernorm2d", "relu")]
)
def test_norm_and_activation_choices(norm, act):
    model = timm.create_model(
        "metaformer_s12", mixer="gnconv", norm=norm, act=act, in_chans=1, num_classes=4
    )
    block = model.stages[1].blocks[0]
    assert isinstance(block.norm1, get_norm_layer(norm))
    assert isinstance(block.mlp.act, get_act_layer(act))
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_unknown_norm_lists_the_choices():
    with pytest.raises(ValueError, match="unknown norm layer 'bn'; choose one of: batchnorm"):
        timm.create_model("metaformer_s12", norm="bn")


def test_grid_config_selects_the_mixer(make_cfg):
    cfg = make_cfg("backbone=metaformer_grid", "backbone.mixer=gnconv_gf")
    assert cfg.backbone.kwargs.mixer == "gnconv_gf"
