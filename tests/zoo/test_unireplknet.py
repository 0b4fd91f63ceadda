"""UniRepLKNet: the paper's parameter counts, and structural re-parameterization being exact."""

import pytest
import timm
import torch
from timm.utils.model import reparameterize_model
from torch import nn

from zoo.backbones.unireplknet import UniRepLKNetBlock
from zoo.operators.dilated_reparam import DILATED_BRANCHES, DilatedReparamConv

# Paper Table 1 (ImageNet-1K; the official README repeats it), millions, inference structure
PAPER_PARAMS_M = {
    "unireplknet_a": 4.4,
    "unireplknet_f": 6.2,
    "unireplknet_p": 10.7,
    "unireplknet_n": 18.3,
    "unireplknet_t": 31.0,
}
# the official code's exact counts (inference structure), which our layers reproduce
OFFICIAL_PARAMS = {
    "unireplknet_a": 4_437_300,
    "unireplknet_f": 6_235_216,
    "unireplknet_p": 10_741_704,
    "unireplknet_n": 18_318_560,
    "unireplknet_t": 31_037_980,
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize(module: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine terms, GRN and layer scale: a 'trained' module."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_(0, 0.2)
    for name, p in module.named_parameters():
        if name.endswith(("gamma", "grn.weight", "grn.bias")):
            p.data.normal_(0, 0.5)
    return module.eval()


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta").eval()
    training_count = _count(model)
    model.reparameterize()  # the table counts the inference structure
    count = _count(model)
    assert count < training_count
    assert abs(count / 1e6 - PAPER_PARAMS_M[name]) / PAPER_PARAMS_M[name] < 0.01
    assert round(count / 1e6, 1) == PAPER_PARAMS_M[name]
    assert count == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize("kernel_size", sorted(DILATED_BRANCHES))
def test_dilated_reparam_block_folds_into_one_large_conv(kernel_size):
    block = _randomize(DilatedReparamConv(8, kernel_size))
    for branch in block.branches:  # the branches must contribute for the test to mean anything
        branch.conv.weight.data.normal_(0, 1)
    x = torch.randn(2, 8, 21, 19)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        got = block(x)
    assert len(block.branches) == 0 and isinstance(block.lk_bn, nn.Identity)
    assert block.lk.kernel_size == (kernel_size, kernel_size) and block.lk.bias is not None
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("kernel_size", [3, 13])
def test_block_reparameterized_equals_training_time(kernel_size):
    block = _randomize(UniRepLKNetBlock(16, kernel_size))
    x = torch.randn(2, 16, 15, 15)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        got = block(x)
        block.reparameterize()  # timm may call it twice (block, then its children): a no-op
        again = block(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert block.gamma is None and block.grn.bias is None
    assert (got - expected).abs().max() < 1e-4
    torch.testing.assert_close(again, got)


def test_timm_reparameterize_model_removes_every_branch_and_keeps_outputs():
    model = _randomize(timm.create_model("unireplknet_a", in_chans=1, num_classes=10))
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = model(x)
        deployed = reparameterize_model(model)  # a reparameterized deep copy
        got = deployed(x)
    assert not any(isinstance(m, nn.BatchNorm2d | DilatedReparamConv) for m in deployed.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is intact
    assert _count(deployed) < _count(model)
    assert (got - expected).abs().max() < 1e-4
    # the model's own method gives the same inference structure
    model.reparameterize()
    with torch.no_grad():
        torch.testing.assert_close(model(x), got)


def test_tiny_single_channel_input():
    model = timm.create_model("unireplknet_a", in_chans=1, num_classes=10)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("unireplknet_a", in_chans=1, features_only=True)
    assert [f.shape[1] for f in features(torch.randn(2, 1, 64, 64))] == [40, 80, 160, 320]


def test_kernel_sizes_must_cover_every_block():
    with pytest.raises(ValueError, match="one size per block"):
        timm.create_model("unireplknet_a", kernel_sizes=((3, 3), (13,), (13,) * 6, (13, 13)))
    with pytest.raises(ValueError, match="kernel sizes"):
        DilatedReparamConv(8, kernel_size=19)
