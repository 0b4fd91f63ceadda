"""Rate-adaptive dilated convolution: one kernel, adapted per rate."""

import torch
import torch.nn.functional as F

from zoo.operators.rate_adaptive import RateAdaptiveDilatedConv


def test_unadapted_rates_are_dilated_convolutions_with_the_shared_kernel():
    torch.manual_seed(0)
    conv = RateAdaptiveDilatedConv(3, 4, rates=(1, 2, 4))
    x = torch.randn(2, 3, 20, 20)
    for index, rate in enumerate(conv.rates):
        expected = F.conv2d(x, conv.weight, conv.bias, padding=rate, dilation=rate)
        torch.testing.assert_close(conv(x, index), expected)


def test_parameters_are_one_kernel_plus_two_per_channel_per_rate():
    conv = RateAdaptiveDilatedConv(8, 16, rates=(2, 4, 8, 16))
    plain = torch.nn.Conv2d(8, 16, 3)
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * 16 * 4


def test_adaptation_makes_rates_differ_and_the_kernel_learns_from_all_rates():
    torch.manual_seed(0)
    conv = RateAdaptiveDilatedConv(2, 2, rates=(1, 2))
    with torch.no_grad():
        conv.gamma[1] = 2.0
    assert not torch.allclose(conv.kernel_for(0), conv.kernel_for(1))
    x = torch.randn(1, 2, 9, 9)
    conv(x, 0).sum().backward()
    from_first = conv.weight.grad.clone()
    conv(x, 1).sum().backward()
    assert not torch.allclose(conv.weight.grad, from_first)  # the second rate also trains W
