"""Tunable convolution: a one-hot tuning parameter is exactly that one kernel."""

import pytest
import torch
import torch.nn.functional as F

from zoo.operators.tunable import TunableConv2d


@pytest.mark.parametrize("groups", [1, 4])
def test_one_hot_tuning_equals_the_single_kernel(groups):
    torch.manual_seed(0)
    conv = TunableConv2d(8, 8, kernel_size=3, num_params=3, groups=groups)
    x = torch.randn(2, 8, 10, 10)
    for i in range(3):
        p = F.one_hot(torch.tensor(i), 3).float()
        expected = F.conv2d(x, conv.weight[i], conv.bias[i], padding=1, groups=groups)
        torch.testing.assert_close(conv(x, p), expected)


def test_interpolation_is_linear_in_p_and_per_image_p_matches_shared_p():
    torch.manual_seed(0)
    conv = TunableConv2d(4, 6, kernel_size=3, num_params=2)
    x = torch.randn(3, 4, 8, 8)
    p = torch.tensor([0.3, 0.7])
    mixed = conv(x, p)
    ends = 0.3 * conv(x, torch.tensor([1.0, 0.0])) + 0.7 * conv(x, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(mixed, ends)
    per_image = conv(x, torch.tensor([[0.3, 0.7], [1.0, 0.0], [0.3, 0.7]]))
    torch.testing.assert_close(per_image[0], mixed[0])
    torch.testing.assert_close(per_image[1], conv(x, torch.tensor([1.0, 0.0]))[1])


def test_wrong_tuning_size_is_refused():
    with pytest.raises(ValueError, match="expected 2"):
        TunableConv2d(4, 4)(torch.randn(1, 4, 5, 5), torch.ones(3) / 3)
