"""GLNet: the paper's parameter counts, and what makes GLMix a grid/slot integration."""

import pytest
import timm
import torch
from torch import nn

from zoo.operators.glmix import GLMix

# Official model card (github.com/rayleizhu/GLMix README): millions, to the nearest million
PAPER_PARAMS_M = {"glnet_4g": 27, "glnet_stl": 30, "glnet_9g": 60, "glnet_16g": 106}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    count = sum(p.numel() for p in timm.create_model(name, device="meta").parameters())
    assert count == pytest.approx(PAPER_PARAMS_M[name] * 1e6, rel=0.01)
    assert round(count / 1e6) == PAPER_PARAMS_M[name]


def _global_branch_only(mixer: GLMix) -> GLMix:
    for conv in mixer.local:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return mixer.eval()


def test_attention_runs_on_a_fixed_number_of_slots_at_any_resolution():
    torch.manual_seed(0)
    mixer = GLMix(64, num_slots=16)
    seen = []
    mixer.attn.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    for size in (8, 32):
        assert mixer(torch.randn(2, 64, size, size)).shape == (2, 64, size, size)
    assert seen == [(2, 16, 64), (2, 16, 64)]


def test_clustering_and_dispatching_are_convex_combinations():
    """Each slot is a weighted mean of pixels and each pixel a weighted mean of slots: with the
    slot attention an identity, a constant map goes through the global branch unchanged."""
    torch.manual_seed(0)
    mixer = _global_branch_only(GLMix(32))
    mixer.attn = nn.Identity()
    x = torch.randn(1, 32, 1, 1).expand(2, 32, 7, 9)
    torch.testing.assert_close(mixer(x), x)


def test_global_branch_ignores_pixel_layout_given_the_slots():
    """Once the slots are initialised, clustering, slot attention and dispatching see a set of
    pixels: shuffling the pixels shuffles the output the same way (unlike the conv branch)."""
    torch.manual_seed(0)
    mixer = _global_branch_only(GLMix(32, num_slots=4))
    x = torch.randn(2, 32, 6, 6)
    slots = mixer.init_slots(x)
    perm = torch.randperm(36)
    shuffled = x.flatten(2)[..., perm].view_as(x)
    out = mixer(x, slots).flatten(2)[..., perm].view_as(x)
    torch.testing.assert_close(mixer(shuffled, slots), out)


def test_glnet_blocks_pool_slots_from_the_block_input():
    torch.manual_seed(0)
    model = timm.create_model("glnet_4g", num_classes=0).eval()
    block = model.stages[0].blocks[0]
    x = torch.randn(1, 64, 16, 16)
    captured = {}
    block.mixer.register_forward_hook(lambda module, args, out: captured.update(slots=args[1]))
    block(x)
    expected = nn.functional.adaptive_avg_pool2d(x, 8).flatten(2).transpose(1, 2)
    torch.testing.assert_close(captured["slots"], expected)


def test_tiny_grayscale_forward_and_features():
    model = timm.create_model("glnet_4g", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("glnet_stl", features_only=True, in_chans=1)
    shapes = [f.shape[1:] for f in features(torch.randn(1, 1, 64, 64))]
    assert shapes == [(96, 16, 16), (192, 8, 8), (384, 4, 4), (768, 2, 2)]
