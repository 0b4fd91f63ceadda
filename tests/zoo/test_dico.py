"""DiCo's compact channel attention: a per-channel gate set by the channel means."""

import torch

from zoo.operators.dico import CompactChannelAttention


def test_gate_is_spatially_uniform_per_channel_and_in_0_1():
    torch.manual_seed(0)
    cca = CompactChannelAttention(6)
    x = torch.rand(2, 6, 5, 7) + 0.1  # positive, so the ratio is defined everywhere
    gate = cca(x) / x
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-6)
    assert (gate > 0).all() and (gate < 1).all()


def test_gate_depends_only_on_channel_means():
    torch.manual_seed(0)
    cca = CompactChannelAttention(4)
    x = torch.rand(1, 4, 6, 6)
    shuffled = x.flatten(2)[..., torch.randperm(36)].view_as(x)  # same means, pixels moved
    torch.testing.assert_close(cca(x) / x, cca(shuffled) / shuffled)


def test_gate_has_one_full_layer_and_no_bottleneck():
    cca = CompactChannelAttention(16)
    assert sum(p.numel() for p in cca.parameters()) == 16 * 16 + 16
