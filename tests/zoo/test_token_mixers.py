"""The token-mixer contract, for every mixer registered in the zoo."""

import pytest
import torch

from zoo.operators import create_token_mixer, list_token_mixers


@pytest.mark.parametrize("name", list_token_mixers())
@pytest.mark.parametrize("size", [(9, 7), (1, 1)])
def test_mixer_keeps_shape_and_trains(name, size):
    torch.manual_seed(0)
    mixer = create_token_mixer(name, 64)
    x = torch.randn(2, 64, *size, requires_grad=True)
    y = mixer(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", list_token_mixers())
def test_mixer_builds_on_meta_device(name):
    with torch.device("meta"):
        mixer = create_token_mixer(name, 128)
    assert all(t.device.type == "meta" for t in [*mixer.parameters(), *mixer.buffers()])
