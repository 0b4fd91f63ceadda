"""Dynamic-range convolution: sorting before, and exactly undoing it after."""

import torch
from torch import nn

from zoo.operators.dynamic_range import DynamicRangeConv


def _identity_convs(op: DynamicRangeConv) -> None:
    dim = op.pw.in_channels
    with torch.no_grad():
        op.pw.weight.copy_(torch.eye(dim)[:, :, None, None])
        nn.init.dirac_(op.dw.weight, groups=dim)


def test_with_identity_kernels_the_sort_is_undone_exactly():
    torch.manual_seed(0)
    op = DynamicRangeConv(6)
    _identity_convs(op)
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(op(x), x)


def test_on_already_sorted_features_it_is_the_plain_convolution():
    torch.manual_seed(0)
    op = DynamicRangeConv(4)
    ramp = torch.arange(30.0).view(1, 1, 5, 6)  # increasing along H and along W
    x = torch.cat([ramp, 2 * ramp, torch.randn(1, 2, 5, 6)], dim=1)
    torch.testing.assert_close(op(x), op.dw(op.pw(x)))


def test_sorted_half_aggregates_by_intensity_not_by_position():
    """Moving pixels of the sorted half does not change what each pixel's output value is."""
    torch.manual_seed(0)
    op = DynamicRangeConv(2)  # one sorted channel, one spatial channel
    x = torch.randn(1, 2, 1, 8)
    x[:, 1] = 0  # the spatial half carries nothing
    perm = torch.randperm(8)
    moved = x[..., perm]
    # outputs of the sorted channel follow their pixels: a permutation of the input permutes them
    torch.testing.assert_close(op(moved)[:, 0], op(x)[:, 0][..., perm], rtol=1e-5, atol=1e-6)
