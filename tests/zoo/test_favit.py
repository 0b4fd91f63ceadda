"""FaViT: the paper's parameter counts, and what makes FaSA a factorized, long-range attention."""

import pytest
import timm
import torch
from torch import nn

from zoo.operators.favit import (
    FactorizationSelfAttention,
    dilated_window_tokens,
    fasa_channel_groups,
    reflect_pad_indices,
)

# Classification table of the official repository (FaViT/README.md, "#Params (M)"), which the
# paper's ImageNet table repeats
PAPER_PARAMS_M = {"favit_b0": 3.4, "favit_b1": 13.0}
# the official code's exact counts, which our layers reproduce parameter for parameter
OFFICIAL_PARAMS = {"favit_b0": 3_427_704, "favit_b1": 12_958_568}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert count / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.01)
    assert count == OFFICIAL_PARAMS[name]


def test_channel_groups_follow_the_official_split():
    assert fasa_channel_groups(32, sr_ratio=8) == [4, 14, 14]
    assert fasa_channel_groups(256, sr_ratio=1) == [32, 224]
    with pytest.raises(ValueError, match="divisible by 16"):
        fasa_channel_groups(40, sr_ratio=2)


def test_dilated_window_tokens_average_the_same_sample_of_every_window():
    """Token (i, j) is the mean over windows of the sample at (a*s + i*d, b*s + j*d)."""
    torch.manual_seed(0)
    window, dilation = 3, 2
    stride = dilation * (window - 1) + 1  # 5: windows tile the map without overlap
    x = torch.randn(2, 4, 2 * stride, 3 * stride)
    tokens = dilated_window_tokens(x, window, dilation)
    assert tokens.shape == (2, 4, window, window)
    for i in range(window):
        for j in range(window):
            samples = [
                x[:, :, a * stride + i * dilation, b * stride + j * dilation]
                for a in range(2)
                for b in range(3)
            ]
            torch.testing.assert_close(tokens[:, :, i, j], torch.stack(samples).mean(0))


def test_padding_is_reflection_and_works_on_any_size():
    x = torch.arange(10.0).reshape(1, 1, 2, 5)
    padded = x.index_select(3, reflect_pad_indices(5, 8, x.device))
    torch.testing.assert_close(padded, nn.ReflectionPad2d((0, 3, 0, 0))(x))
    assert reflect_pad_indices(3, 9, x.device).tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0]
    assert reflect_pad_indices(1, 4, x.device).tolist() == [0, 0, 0, 0]


def test_keys_per_query_do_not_grow_with_the_map():
    """Local-window cost: a window group offers k^2 keys to each query at any input size."""
    torch.manual_seed(0)
    fasa = FactorizationSelfAttention(64, num_heads=2, sr_ratio=4)
    for size in (14, 28, 56):
        for group in fasa.window_kv:
            key, value = group(torch.randn(1, group.head_dim * 2, size, size))
            assert key.shape == value.shape == (1, 2, 49, group.head_dim)


def test_a_window_group_alone_sees_the_whole_map():
    """Long range: with the global group switched off, one output still depends on every input."""
    torch.manual_seed(0)
    fasa = FactorizationSelfAttention(64, num_heads=2, sr_ratio=4).eval()
    nn.init.zeros_(fasa.global_kv.kv.weight)  # the global group's keys and values vanish
    nn.init.zeros_(fasa.global_kv.kv.bias)
    nn.init.zeros_(fasa.global_kv.pos.weight)
    nn.init.zeros_(fasa.global_kv.pos.bias)
    x = torch.randn(1, 64, 30, 30, requires_grad=True)
    fasa(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(0) > 0).all()


def test_forward_on_tiny_single_channel_input():
    model = timm.create_model("favit_b0", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
        assert model(torch.randn(1, 1, 5, 3)).shape == (1, 10)
