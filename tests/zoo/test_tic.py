"""TiC and MSA-Conv: attention restricted to a convolution's sliding window."""

import pytest
import timm
import torch
import torch.nn.functional as F

from zoo.backbones.tic import cyclic_shift
from zoo.operators.msa_conv import MSAConv2d

# our own design (no paper table): the count the module docstring states
TIC_TINY_PARAMS = 21_289_192


def test_parameter_count_is_the_documented_one():
    model = timm.create_model("tic_tiny", device="meta")
    assert sum(p.numel() for p in model.parameters()) == TIC_TINY_PARAMS


def _reference_attention(op: MSAConv2d, x: torch.Tensor) -> torch.Tensor:
    """Pixel by pixel: softmax over the zero-padded, dilated window of q . k, per head."""
    batch, channels, height, width = x.shape
    heads, k, d = op.num_heads, op.kernel_size, op.dilation
    q, key, v = op.qkv(x).chunk(3, dim=1)
    pad = d * (k - 1) // 2
    key, v = F.pad(key, (pad,) * 4), F.pad(v, (pad,) * 4)
    out = torch.zeros_like(x)
    for i in range(height):
        for j in range(width):
            keys = key[:, :, i : i + 2 * pad + 1 : d, j : j + 2 * pad + 1 : d].flatten(2)
            values = v[:, :, i : i + 2 * pad + 1 : d, j : j + 2 * pad + 1 : d].flatten(2)
            keys, values = keys.unflatten(1, (heads, -1)), values.unflatten(1, (heads, -1))
            query = q[:, :, i, j].unflatten(1, (heads, -1))
            weights = (torch.einsum("bhc,bhck->bhk", query, keys) * op.scale).softmax(-1)
            out[:, :, i, j] = torch.einsum("bhk,bhck->bhc", weights, values).flatten(1)
    return out


@pytest.mark.parametrize(("kernel_size", "dilation", "heads"), [(3, 1, 1), (3, 2, 2), (5, 1, 4)])
def test_attention_is_softmax_over_each_window(kernel_size, dilation, heads):
    torch.manual_seed(0)
    op = MSAConv2d(8, 8, kernel_size, dilation=dilation, num_heads=heads).double()
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(op.attend(x), _reference_attention(op, x))
    torch.testing.assert_close(op(x), op.proj(op.attend(x) + x))


def test_zero_queries_reduce_the_window_attention_to_a_box_convolution():
    """With all logits equal, each window averages its values: a fixed 3x3 mean filter over the
    zero-padded map, i.e. the convolution MSA-Conv generalises."""
    torch.manual_seed(0)
    op = MSAConv2d(4, 4, 3).double()
    with torch.no_grad():
        op.qkv.weight[:4].zero_()
        op.qkv.bias[:4].zero_()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    values = op.qkv(x)[:, 8:]
    box = F.avg_pool2d(values, 3, stride=1, padding=1, count_include_pad=True)
    torch.testing.assert_close(op.attend(x), box)


def test_output_depends_only_on_the_window_neighbourhood():
    torch.manual_seed(0)
    op = MSAConv2d(4, 4, 3)
    x = torch.randn(1, 4, 12, 12, requires_grad=True)
    op(x)[0, :, 6, 6].sum().backward()
    touched = x.grad[0].abs().sum(0) > 0
    # a 3x3 window, then the 3x3 projection: a 5x5 neighbourhood of (6, 6)
    assert touched[4:9, 4:9].all() and touched.sum() == 25


def test_cyclic_shift_moves_four_channel_groups_a_quarter_map_four_ways():
    x = torch.zeros(1, 4, 8, 8)
    x[:, :, 4, 4] = 1.0
    shifted = cyclic_shift(x)
    positions = [tuple(torch.nonzero(shifted[0, c])[0].tolist()) for c in range(4)]
    assert positions == [(2, 4), (6, 4), (4, 2), (4, 6)]
    assert cyclic_shift(torch.randn(2, 8, 1, 1)).shape == (2, 8, 1, 1)


def test_tiny_grayscale_forward_at_any_size():
    model = timm.create_model("tic_tiny", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
        assert model(torch.randn(1, 1, 50, 70)).shape == (1, 10)
