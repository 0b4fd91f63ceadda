"""IdentityFormer and RandFormer, and the MetaFormer baselines' mixers for the grid."""

import pytest
import timm
import torch
from timm.models.metaformer import Pooling
from torch import nn

from zoo.operators import create_token_mixer
from zoo.operators.metaformer_mixers import RandomMixing, resize_mixing_matrix

# Model table of github.com/sail-sg/metaformer (README; the paper's ImageNet-1K table), millions:
# trainable parameters, and the frozen random matrices that RandFormer adds ("11.9 + 0.2M").
PAPER_PARAMS_M = {"identityformer_s12": 11.9, "randformer_s12": 11.9}
PAPER_FROZEN_M = {"identityformer_s12": 0.0, "randformer_s12": 0.2}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    frozen = sum(b.numel() for n, b in model.named_buffers() if n.endswith("random_matrix"))
    assert abs(count / 1e6 / PAPER_PARAMS_M[name] - 1) < 0.01
    assert round(frozen / 1e6, 1) == PAPER_FROZEN_M[name]


def test_randformer_draws_its_matrices_for_the_stage_grids_at_224():
    model = timm.create_model("randformer_s12", device="meta")
    shapes = [
        [tuple(b.shape) for n, b in stage.named_buffers() if n.endswith("random_matrix")]
        for stage in model.stages
    ]
    assert shapes == [[], [], [(196, 196)] * 6, [(49, 49)] * 2]


def test_identityformer_is_poolformerv2_without_token_mixing():
    """Same skeleton as PoolFormerV2-S12: its weights load, and removing pooling gives ours."""
    torch.manual_seed(0)
    ours = timm.create_model("identityformer_s12", num_classes=10).eval()
    reference = timm.create_model("poolformerv2_s12", num_classes=10).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pooled = reference(x)
        for block in reference.modules():
            if isinstance(getattr(block, "token_mixer", None), Pooling):
                block.token_mixer = nn.Identity()
        torch.testing.assert_close(ours(x), reference(x))
        assert not torch.allclose(ours(x), pooled)


def test_random_mixing_is_a_fixed_row_stochastic_matrix():
    torch.manual_seed(0)
    mixer = RandomMixing(8, grid_size=4)
    matrix = mixer.random_matrix
    assert not any(True for _ in mixer.parameters())  # frozen: a buffer, saved with the weights
    assert "random_matrix" in mixer.state_dict()
    assert (matrix > 0).all()
    torch.testing.assert_close(matrix.sum(-1), torch.ones(16))
    x = torch.randn(2, 8, 4, 4)
    expected = torch.einsum("mn,bcn->bcm", matrix, x.flatten(2)).reshape(x.shape)
    torch.testing.assert_close(mixer(x), expected)


@pytest.mark.parametrize("size", [(9, 7), (1, 1), (28, 28)])
def test_random_mixing_resamples_to_other_sizes_and_stays_convex(size):
    torch.manual_seed(0)
    mixer = RandomMixing(4, grid_size=14)
    matrix = resize_mixing_matrix(mixer.random_matrix, 14, size)
    tokens = size[0] * size[1]
    assert matrix.shape == (tokens, tokens) and (matrix > 0).all()
    torch.testing.assert_close(matrix.sum(-1), torch.ones(tokens))
    constant = torch.full((1, 4, *size), 3.0)  # convex combinations keep a constant map
    torch.testing.assert_close(mixer(constant), constant)


def test_random_mixing_keeps_its_matrix_at_its_own_size():
    torch.manual_seed(0)
    matrix = RandomMixing(4, grid_size=7).random_matrix
    torch.testing.assert_close(resize_mixing_matrix(matrix, 7, (7, 7)), matrix)


def test_sepconv_mixer_is_convformers_on_nchw_maps():
    torch.manual_seed(0)
    convformer = timm.create_model("convformer_s18", num_classes=0).eval()
    reference = convformer.stages[0].blocks[0].token_mixer
    mixer = create_token_mixer("sepconv", 64).eval()
    mixer.load_state_dict(reference.state_dict())
    x = torch.randn(2, 64, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), reference(x))


def test_pooling_mixer_is_average_pooling_minus_identity():
    x = torch.randn(1, 2, 5, 5)
    y = create_token_mixer("pooling", 2)(x)
    torch.testing.assert_close(y[..., 2, 2], x[..., 1:4, 1:4].mean((-2, -1)) - x[..., 2, 2])
    torch.testing.assert_close(y[..., 0, 0], x[..., :2, :2].mean((-2, -1)) - x[..., 0, 0])


def test_identity_mixer_returns_its_input():
    x = torch.randn(1, 3, 4, 4)
    assert create_token_mixer("identity", 3)(x) is x


def test_tiny_single_channel_input():
    for name in PAPER_PARAMS_M:
        model = timm.create_model(name, in_chans=1, num_classes=10).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
