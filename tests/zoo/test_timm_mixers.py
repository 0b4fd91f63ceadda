"""timm's DFC attention and GPSA as grid mixers."""

import torch
from timm.models.convit import GPSA
from timm.models.ghostnet import GhostModuleV2
from timm.models.inception_next import InceptionDWConv2d

from zoo.operators import create_token_mixer
from zoo.operators.timm_mixers import DFCAttentionMixer, GPSAMixer, relative_indices


def test_relative_indices_match_timm_on_square_grids():
    reference = GPSA(8, num_heads=2).get_rel_indices(25)
    torch.testing.assert_close(relative_indices(5, 5), reference)


def test_gpsa_starts_local_like_a_convolution():
    """At initialisation, with full positional gating, a token attends mostly to its neighbours."""
    torch.manual_seed(0)
    mixer = GPSAMixer(128, locality_strength=3.0)
    with torch.no_grad():
        mixer.gpsa.gating_param.fill_(20.0)  # sigmoid ~ 1: positional attention only
    x = torch.randn(1, 128, 9, 11)
    mixer(x)  # builds the relative table for 9 x 11
    attn = mixer.gpsa.get_attention(x.flatten(2).transpose(1, 2))[0]  # heads, N, N
    centre = 4 * 11 + 5
    distance = relative_indices(9, 11)[0, centre, :, 2].sqrt()
    mean_distance = (attn[:, centre] * distance).sum(-1)
    assert (mean_distance < 2.0).all()  # uniform attention would average about 4 tokens away


def test_dfc_matches_timm_on_even_maps():
    torch.manual_seed(0)
    mixer = DFCAttentionMixer(16).eval()
    reference = GhostModuleV2(16, 16).eval()
    reference.load_state_dict(mixer.ghost.state_dict())
    x = torch.randn(2, 16, 8, 6)
    torch.testing.assert_close(mixer(x), reference(x))


def test_inception_dw_leaves_the_identity_branch_untouched():
    """InceptionDW convolves 3/8 of the channels (3x3, 1x11, 11x1) and passes the rest through."""
    mixer = create_token_mixer("inception_dw", 64)
    assert isinstance(mixer, InceptionDWConv2d)
    x = torch.randn(1, 64, 12, 12)
    y = mixer(x)
    identity = 64 - 3 * 8
    torch.testing.assert_close(y[:, :identity], x[:, :identity])
    assert not torch.allclose(y[:, identity:], x[:, identity:])
