"""NiNformer: the paper's setting, and what its token-mixing generated gate does."""

import timm
import torch
from torch import nn

from zoo.operators.ninformer import MixerGatingUnit

# The paper gives no parameter table; its CIFAR setting (the official train.py: 32x32 input,
# patch 4, width 256, 4 blocks, MLP width 512, 10 classes) builds this many in the official code
OFFICIAL_SETTING_PARAMS = 2_652_170


def test_parameter_count_matches_the_official_setting():
    model = timm.create_model("ninformer", device="meta")
    assert model.num_classes == 10 and model.feature_info[0]["reduction"] == 4
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_SETTING_PARAMS


def test_unit_is_a_projection_gated_by_a_mixer_block():
    torch.manual_seed(0)
    unit = MixerGatingUnit(16, grid_size=4, token_hidden=32).eval()
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(unit(x), unit.proj(x) * unit.mixer(x))


def _reach(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    unit(x)[0, :, 1, 2].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def test_the_gate_carries_token_mixing_into_a_pointwise_projection():
    """Each output sees every token through the gate; without token mixing it sees only its own."""
    torch.manual_seed(0)
    unit = MixerGatingUnit(8, grid_size=(3, 4), token_hidden=16).eval()
    x = torch.randn(1, 8, 3, 4)
    assert _reach(unit, x).all()
    nn.init.zeros_(unit.mixer.token_mlp.fc2.weight)
    nn.init.zeros_(unit.mixer.token_mlp.fc2.bias)
    reach = _reach(unit, x)
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[1, 2] = True
    assert torch.equal(reach, expected)


def test_token_mlp_runs_on_the_built_grid_for_any_input():
    torch.manual_seed(0)
    unit = MixerGatingUnit(8, grid_size=4, token_hidden=16).eval()
    x = torch.randn(2, 8, 4, 4)
    mixer = unit.mixer
    torch.testing.assert_close(mixer.mix_tokens(x), mixer.token_mlp(x.flatten(2)).reshape(x.shape))
    for size in ((1, 1), (7, 3), (16, 16)):
        assert unit(torch.randn(2, 8, *size)).shape == (2, 8, *size)


def test_forward_on_tiny_single_channel_input():
    model = timm.create_model("ninformer", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
        assert model(torch.randn(1, 1, 64, 48)).shape == (1, 10)
