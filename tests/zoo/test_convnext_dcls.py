"""DCLS and ConvNeXt-dcls: the paper's parameter count, and learnable kernel-element positions."""

import pytest
import timm
import torch
import torch.nn.functional as F

from zoo.operators.dcls import DclsConv2d, dcls_kernel

# Paper Table 2 (ImageNet-1k, ConvNeXt-T-dcls, 17x17 window, 34 elements): 28.6M; the official
# ConvNeXt-dcls README rounds it to 28M
PAPER_PARAMS_M = 28.6
OFFICIAL_PARAMS = 28_587_688  # the official ConvNeXt-dcls code's exact count


def test_parameter_count_matches_the_paper():
    model = timm.create_model("convnext_tiny_dcls", device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / 1e6 - PAPER_PARAMS_M) / PAPER_PARAMS_M < 0.01
    assert count == OFFICIAL_PARAMS


def test_positions_are_shared_per_stage_and_stay_shared():
    with torch.device("meta"):
        model = timm.create_model("convnext_tiny_dcls")
    model.to_empty(device="cpu")
    for stage in model.stages:
        shared = {id(block.conv_dw.positions) for block in stage.blocks}
        assert len(shared) == 1
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS
    # one position set per stage, exempt from weight decay as in the official recipe
    assert len(model.no_weight_decay()) == len(model.stages)


def test_integer_positions_place_each_weight_on_its_tap():
    torch.manual_seed(0)
    out_chs, in_chs, size = 3, 2, (7, 5)
    taps = [(-3, -2), (0, 0), (3, 2), (1, -1)]  # the window's corners and centre, all distinct
    weight = torch.randn(out_chs, in_chs, len(taps))
    positions = torch.tensor(taps, dtype=torch.float32).t()[:, None, None, :]
    positions = positions.expand(2, out_chs, in_chs, len(taps))
    expected = torch.zeros(out_chs, in_chs, *size)
    for k, (dy, dx) in enumerate(taps):
        expected[:, :, dy + size[0] // 2, dx + size[1] // 2] = weight[:, :, k]
    torch.testing.assert_close(dcls_kernel(weight, positions, size), expected)


def test_fractional_position_is_spread_bilinearly():
    weight = torch.tensor([[[2.0]]])
    positions = torch.tensor([0.25, -0.5]).view(2, 1, 1, 1)  # a quarter down, half left
    kernel = dcls_kernel(weight, positions, (3, 3))[0, 0]
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.75, 0.75, 0.0], [0.25, 0.25, 0.0]])
    torch.testing.assert_close(kernel, expected)


def test_positions_learn_to_match_a_shifted_target_kernel():
    """Regress onto a conv whose single tap is at (+1, +1): the position must move there."""
    torch.manual_seed(0)
    conv = DclsConv2d(1, 1, kernel_count=1, dilated_kernel_size=5, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.positions.offsets.copy_(torch.tensor([0.2, 0.3]).view(2, 1, 1, 1))
    start = conv.positions.offsets.detach().clone()
    target_kernel = torch.zeros(1, 1, 5, 5)
    target_kernel[0, 0, 3, 3] = 1.0
    x = torch.randn(8, 1, 16, 16)
    target = F.conv2d(x, target_kernel, padding=2)
    optimizer = torch.optim.Adam(conv.parameters(), lr=0.05)
    losses = []
    for step in range(40):
        optimizer.zero_grad()
        loss = F.mse_loss(conv(x), target)
        loss.backward()
        if step == 0:
            assert conv.positions.offsets.grad.abs().min() > 0  # both coordinates get gradient
        optimizer.step()
        losses.append(loss.item())
    end = conv.positions.offsets.detach().view(2)
    assert not torch.equal(end, start.view(2))
    assert (end - 1.0).abs().max() < 0.1  # reached the target tap
    assert losses[-1] < 0.05 * losses[0]


def test_tiny_single_channel_input():
    model = timm.create_model("convnext_tiny_dcls", in_chans=1, num_classes=10)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("convnext_tiny_dcls", in_chans=1, features_only=True)
    assert [f.shape[1] for f in features(torch.randn(2, 1, 64, 64))] == [96, 192, 384, 768]


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (8, 8), (12, 5)])
def test_window_cropped_to_a_small_map_changes_nothing(size):
    """Taps that only ever meet padding are dropped: output and every gradient unchanged."""
    torch.manual_seed(0)
    conv = DclsConv2d(4, 4, kernel_count=5, dilated_kernel_size=17, groups=4).double()
    with torch.no_grad():  # spread the elements over the whole window, beyond a small map
        conv.positions.offsets.uniform_(-8, 8)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    out = conv(x)
    full = F.conv2d(x, conv.kernel(), conv.bias, padding=8, groups=4)
    torch.testing.assert_close(out, full, rtol=1e-12, atol=1e-12)
    params = list(conv.parameters())
    grads = torch.autograd.grad(out.square().sum(), params)
    full_grads = torch.autograd.grad(full.square().sum(), params)
    for got, expected in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
