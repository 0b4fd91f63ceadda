"""CAS-ViT: the paper's parameter counts, and what makes CATM additive and global."""

import pytest
import timm
import torch

from zoo.operators.catm import ConvAdditiveTokenMixer

# Official model-zoo table (github.com/Tianfang-Zhang/CAS-ViT MODEL_ZOO.md), millions; the paper's
# ImageNet-1K table rounds them to one decimal. Both classifiers (distillation) are counted.
PAPER_PARAMS_M = {"cas_vit_xs": 3.20, "cas_vit_s": 5.76, "cas_vit_m": 12.42, "cas_vit_t": 21.76}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 2) == PAPER_PARAMS_M[name]
    assert abs(count / 1e6 / PAPER_PARAMS_M[name] - 1) < 0.01


def _swap_query_and_key(mixer: ConvAdditiveTokenMixer) -> ConvAdditiveTokenMixer:
    """The same mixer with the roles of Q and K exchanged (projections and interactions)."""
    swapped = ConvAdditiveTokenMixer(mixer.qkv.in_channels).eval()
    swapped.load_state_dict(mixer.state_dict())
    with torch.no_grad():
        q, k, v = mixer.qkv.weight.chunk(3, dim=0)
        swapped.qkv.weight.copy_(torch.cat((k, q, v)))
    swapped.phi_q.load_state_dict(mixer.phi_k.state_dict())
    swapped.phi_k.load_state_dict(mixer.phi_q.state_dict())
    return swapped


def test_similarity_is_additive_so_query_and_key_commute():
    """Sim(Q, K) = Phi(Q) + Phi(K): exchanging Q and K (with their branches) changes nothing."""
    torch.manual_seed(0)
    mixer = ConvAdditiveTokenMixer(16).eval()
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(_swap_query_and_key(mixer)(x), mixer(x))
        # the two branches have their own weights: swapping only the projections matters
        half_swapped = _swap_query_and_key(mixer)
        half_swapped.phi_q.load_state_dict(mixer.phi_q.state_dict())
        half_swapped.phi_k.load_state_dict(mixer.phi_k.state_dict())
        assert not torch.allclose(half_swapped(x), mixer(x))


def test_catm_mixes_globally_with_only_3x3_convolutions():
    """Its convs reach 3 pixels; the channel interaction's global mean links opposite corners."""
    torch.manual_seed(0)
    mixer = ConvAdditiveTokenMixer(8).eval()
    x = torch.randn(1, 8, 12, 12, requires_grad=True)
    mixer(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, 11, 11].abs().sum() > 0


def test_distillation_heads_are_averaged_at_inference():
    torch.manual_seed(0)
    model = timm.create_model("cas_vit_xs", in_chans=1, num_classes=5)
    x = torch.randn(2, 1, 32, 32)
    model.set_distilled_training(True)
    logits, logits_dist = model(x)
    model.eval()
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        expected = (model.head(features) + model.head_dist(features)) / 2
        torch.testing.assert_close(model(x), expected)
    assert logits.shape == logits_dist.shape == (2, 5)


def test_tiny_single_channel_input():
    model = timm.create_model("cas_vit_xs", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
