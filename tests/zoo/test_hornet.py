"""HorNet: the paper's parameter counts, and what makes g^n Conv recursive and gated."""

import pytest
import timm
import torch

from zoo.operators.gnconv import GlobalLocalFilter, GnConv, gnconv_channel_splits

# Official model-zoo table (github.com/raoyongming/HorNet README; paper Table 1): millions,
# given to the nearest million, so the count must round to the table's figure.
PAPER_PARAMS_M = {"hornet_tiny_7x7": 22, "hornet_tiny_gf": 23, "hornet_small_7x7": 50}
# the official code's exact counts, which our layers reproduce parameter for parameter
OFFICIAL_PARAMS = {
    "hornet_tiny_7x7": 22_409_512,
    "hornet_tiny_gf": 22_991_848,
    "hornet_small_7x7": 49_528_264,
}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6) == PAPER_PARAMS_M[name]
    assert count == OFFICIAL_PARAMS[name]


def test_channel_splits_double_per_order():
    assert gnconv_channel_splits(64, 4) == [8, 16, 32, 64]
    with pytest.raises(ValueError, match="divisible by 16"):
        gnconv_channel_splits(40, 5)


def test_order_one_is_a_single_gated_convolution():
    """With order 1, g^n Conv is proj_out(p0 * dwconv(q0)): a gated (first-order) interaction."""
    torch.manual_seed(0)
    op = GnConv(8, order=1, scale=0.5).eval()
    x = torch.randn(2, 8, 9, 9)
    p0, q0 = op.proj_in(x).split((8, 8), dim=1)
    expected = op.proj_out(p0 * op.dwconv(q0) * 0.5)
    torch.testing.assert_close(op(x), expected)


def test_interaction_order_is_the_polynomial_degree():
    """Scaling the input by t scales an order-n g^n Conv (no biases) by t^(n+1): n gates + 1."""
    torch.manual_seed(0)
    for order in (2, 3, 4):
        op = GnConv(16, order=order).eval()
        for m in op.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        x = torch.randn(1, 16, 8, 8, dtype=torch.float64)
        op = op.double()
        ratio = op(2 * x) / op(x)
        torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0 ** (order + 1)))


def test_global_filter_adapts_to_input_size_and_mixes_globally():
    torch.manual_seed(0)
    gf = GlobalLocalFilter(8, h=14, w=8).eval()
    x = torch.zeros(1, 8, 10, 10, requires_grad=True)
    gf(x + 0.01 * torch.randn_like(x))[0, 1, 0, 0].backward()  # channel 1 is the global half
    assert (x.grad[0].abs().sum(0) > 0).float().mean() > 0.9  # one output sees the whole map


def test_gnconv_keeps_shape_on_tiny_maps():
    for global_filter in (False, True):
        op = GnConv(32, order=3, global_filter=global_filter)
        assert op(torch.randn(2, 32, 1, 1)).shape == (2, 32, 1, 1)
