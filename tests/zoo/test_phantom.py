"""Phantom convolution: a grouped primary conv and its depthwise phantoms, cheaper than a conv."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zoo.operators.phantom import PhantomConv2d


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _flops(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("channels", [64, 256])
def test_fewer_parameters_and_flops_than_the_conv_it_replaces(channels):
    """Against the 3x3 conv + BN + SiLU block of YOLOv8 at equal in/out channels."""
    phantom = PhantomConv2d(channels, channels, stride=2)
    dense = nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels)
    )
    # primary: (C/4) (C/2) 5^2, phantoms: (C/2) 5^2, and a BN (2 x C/2) after each
    half = channels // 2
    assert _params(phantom) == channels // 4 * half * 25 + half * 25 + 2 * 2 * half
    assert _params(phantom) < 0.4 * _params(dense)
    x = torch.randn(1, channels, 16, 16)
    assert _flops(phantom, x) < 0.4 * _flops(dense, x)


def test_second_half_are_depthwise_phantoms_of_the_first():
    torch.manual_seed(0)
    phantom = PhantomConv2d(16, 32).eval()
    x = torch.randn(2, 16, 10, 10)
    out = phantom(x)
    intrinsic, phantoms = out.split(16, dim=1)
    torch.testing.assert_close(intrinsic, phantom.primary(x))
    torch.testing.assert_close(phantoms, phantom.cheap(intrinsic))
    assert phantom.cheap.conv.groups == 16  # one filter per intrinsic map


def test_primary_convolution_is_grouped_in_four():
    """Intrinsic maps of group g see only the input channels of group g."""
    torch.manual_seed(0)
    phantom = PhantomConv2d(16, 32).eval()
    x = torch.randn(1, 16, 8, 8)
    moved = x.clone()
    moved[:, :4] += 1.0  # first input group only
    changed = (phantom.primary(moved) - phantom.primary(x)).abs().amax(dim=(0, 2, 3)) > 0
    assert changed[:4].all() and not changed[4:].any()


def test_stride_and_bad_channel_counts():
    assert PhantomConv2d(8, 16, stride=2)(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)
    with pytest.raises(ValueError, match="divisible by groups"):
        PhantomConv2d(8, 12)
