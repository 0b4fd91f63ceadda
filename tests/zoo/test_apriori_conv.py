"""A priori compressed convolution: a CP kernel of one-way filters, applied without building it."""

import pytest
import torch
import torch.nn.functional as F

from zoo.operators.apriori_conv import CPConv2d


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "rank"), [(16, 32, (3, 3), 4), (8, 8, (5, 3), 2)]
)
def test_parameter_count_follows_the_cp_format(c_in, c_out, kernel, rank):
    conv = CPConv2d(c_in, c_out, kernel, rank=rank)
    assert _params(conv) == c_out * rank * (c_in + kernel[0] + kernel[1]) + c_out
    depthwise = CPConv2d(c_in, c_in, kernel, rank=rank, groups=c_in, bias=False)
    assert _params(depthwise) == c_in * rank * (kernel[0] + kernel[1])
    dense = torch.nn.Conv2d(c_in, c_out, kernel)
    assert _params(conv) < _params(dense)


@pytest.mark.parametrize("groups", [1, 6])
@pytest.mark.parametrize("stride", [1, 2])
def test_factorised_forward_equals_the_reconstructed_rank_r_kernel(groups, stride):
    torch.manual_seed(0)
    conv = CPConv2d(6, 6, (3, 5), rank=3, stride=stride, groups=groups, dilation=2).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64)
    kernel = conv.kernel()
    assert kernel.shape == (6, 6 // groups, 3, 5)
    expected = F.conv2d(x, kernel, conv.bias, stride, conv.padding, dilation=2, groups=groups)
    torch.testing.assert_close(conv(x), expected)


def test_kernel_has_cp_rank_at_most_r():
    """A rank-1 layer's kernel for one output channel is an outer product of three vectors."""
    torch.manual_seed(0)
    kernel = CPConv2d(4, 2, 3, rank=1).double().kernel()[0]  # (in, h, w)
    unfolded = kernel.reshape(4, 9)  # mode-1 unfolding of a rank-one tensor has rank one
    assert torch.linalg.matrix_rank(unfolded).item() == 1


def test_initial_kernel_scale_matches_nn_conv2d():
    torch.manual_seed(0)
    conv = CPConv2d(64, 64, 3, rank=4)
    expected_std = (1 / (3 * 64 * 9)) ** 0.5  # nn.Conv2d's default uniform init
    assert conv.kernel().std().item() == pytest.approx(expected_std, rel=0.2)


def test_only_plain_or_depthwise_groups():
    with pytest.raises(ValueError, match="depthwise"):
        CPConv2d(8, 8, 3, groups=2)
