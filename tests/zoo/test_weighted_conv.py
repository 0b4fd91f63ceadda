"""Weighted convolution: nn.Conv2d's parameters, a kernel shaped by a fixed spatial density."""

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from zoo.operators.weighted_conv import (
    WeightedConv2d,
    convert_to_weighted_conv,
    density_profile,
    weighted_conv2d_from,
)

# ResNet-18: He et al. 2016, Table 1 (11.7M as torchvision counts it); VGG-16: Simonyan and
# Zisserman 2015, Table 2 (138M).
# The weighted convolution adds no parameter, so the counts are the plain networks' exactly.
PAPER_PARAMS = {"weighted_resnet18": 11_689_512, "weighted_vgg16": 138_357_544}


@pytest.mark.parametrize("name", PAPER_PARAMS)
def test_parameter_count_matches_the_plain_network(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01
    assert count == PAPER_PARAMS[name]
    assert any(isinstance(m, WeightedConv2d) for m in model.modules())


@pytest.mark.parametrize("kernel_size, groups", [(3, 1), (5, 2), (7, 8)])
def test_same_parameters_as_conv2d_and_all_ones_density_is_conv2d(kernel_size, groups):
    torch.manual_seed(0)
    weighted = WeightedConv2d(
        8,
        16,
        kernel_size,
        padding=kernel_size // 2,
        groups=groups,
        density=[1.0] * (kernel_size // 2),
    )
    plain = nn.Conv2d(8, 16, kernel_size, padding=kernel_size // 2, groups=groups)
    shapes = [p.shape for p in weighted.parameters()]
    assert shapes == [p.shape for p in plain.parameters()]
    plain.load_state_dict(weighted.state_dict())  # the density is not a saved parameter
    x = torch.randn(2, 8, 11, 9)
    torch.testing.assert_close(weighted(x), plain(x), rtol=0, atol=0)


def test_density_shapes_the_effective_kernel():
    """The output is the conv with W * alpha alpha^T: corners d^2, edges d, centre 1."""
    torch.manual_seed(0)
    conv = WeightedConv2d(4, 6, 3, padding=1, density=[0.5])
    phi = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    torch.testing.assert_close(conv.density_map, phi)
    x = torch.randn(2, 4, 8, 8)
    expected = F.conv2d(x, conv.weight * phi, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    # and it differs from the plain convolution of the same weights
    assert not torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-3)
    # an impulse reads out the effective kernel itself
    impulse = torch.zeros(1, 4, 5, 5)
    impulse[0, 0, 2, 2] = 1.0
    response = conv(impulse)[0, 0] - conv.bias[0]
    torch.testing.assert_close(response[1:4, 1:4], (conv.weight[0, 0] * phi).flip(0, 1))


def test_profile_is_symmetric_with_unit_centre():
    torch.testing.assert_close(
        density_profile([0.25, 0.15, 0.55]),
        torch.tensor([0.25, 0.15, 0.55, 1.0, 0.55, 0.15, 0.25], dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="kernel_size // 2"):
        WeightedConv2d(2, 2, 5, density=[0.5])
    with pytest.raises(ValueError, match="square, odd"):
        WeightedConv2d(2, 2, 2)


def test_conversion_shares_parameters_and_keeps_1x1():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    first = net[0].weight
    convert_to_weighted_conv(net, {3: [1.0]})
    assert isinstance(net[0], WeightedConv2d) and type(net[2]) is nn.Conv2d
    assert net[0].weight is first  # same Parameter: optimizer state and checkpoints carry over
    single = weighted_conv2d_from(nn.Conv2d(3, 3, 5, padding=2))
    assert single.density == (0.2, 0.8)


def test_density_is_rebuilt_after_meta_construction():
    with torch.device("meta"):
        conv = WeightedConv2d(2, 2, 3, density=[0.5])
    conv = conv.to_empty(device="cpu")
    conv.init_non_persistent_buffers()
    assert conv.density_map[0, 0].item() == 0.25


def test_plain_switch_and_tiny_single_channel_input():
    torch.manual_seed(0)
    plain = timm.create_model("weighted_resnet18", weighted=False, in_chans=1, num_classes=10)
    assert not any(isinstance(m, WeightedConv2d) for m in plain.modules())
    model = timm.create_model("weighted_resnet18", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
