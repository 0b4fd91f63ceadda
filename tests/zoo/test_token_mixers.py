"""The token-mixer contract, for every mixer registered in the zoo."""

import pytest
import torch
from timm.layers import get_graph_node_names
from timm.models import GraphExtractNet

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


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", list_token_mixers())
def test_mixer_scripts_and_traces(name):
    # timm's suite scripts and fx-traces every grid model: each mixer must allow both, with
    # data-dependent Python marked as a timm notrace leaf
    torch.manual_seed(0)
    # inside a container, as in a model: a mixer that is itself a notrace leaf stays one
    mixer = torch.nn.Sequential(create_token_mixer(name, 64)).eval()
    x = torch.randn(2, 64, 9, 7)
    # timm's fx feature extraction, returning the last node: the mixer's output
    traced = GraphExtractNet(mixer, [get_graph_node_names(mixer)[1][-1]])
    with torch.no_grad():
        expected = mixer(x)
        torch.testing.assert_close(traced(x), expected)
        torch.testing.assert_close(torch.jit.script(mixer)(x), expected)
