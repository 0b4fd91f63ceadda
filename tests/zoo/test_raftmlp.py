"""RaftMLP: the paper's parameter count, and the axes and rafts its token mixing is confined to."""

import pytest
import timm
import torch
import torch.nn.functional as F

from zoo.operators.raftmlp import RaftMixingBlock, RaftTokenMixer, resize_bicubic

# The paper's ImageNet-1K comparison table (arXiv 2108.04384, "#Params")
PAPER_PARAMS_M = {"raftmlp_s": 9.9}
# the official code's exact count (setting imagenet-raft-mlp-cross-mlp-emb-s)
OFFICIAL_PARAMS = {"raftmlp_s": 9_868_768}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert count / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.01)
    assert count == OFFICIAL_PARAMS[name]


def _reach(block: torch.nn.Module, out_index: tuple, shape: tuple) -> torch.Tensor:
    """Which input positions (H, W) the output entry `out_index` depends on."""
    x = torch.randn(*shape, requires_grad=True)
    block(x)[out_index].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def test_vertical_mixing_stays_in_its_column():
    torch.manual_seed(0)
    block = RaftMixingBlock(8, length=6, raft_size=2, vertical=True)
    reach = _reach(block, (0, slice(None), slice(None), 3), (1, 8, 6, 5))
    expected = torch.zeros(6, 5, dtype=torch.bool)
    expected[:, 3] = True  # the whole column j = 3, nothing else
    assert torch.equal(reach, expected)


def test_horizontal_mixing_stays_in_its_row():
    torch.manual_seed(0)
    block = RaftMixingBlock(8, length=5, raft_size=2, vertical=False)
    reach = _reach(block, (0, slice(None), 2, slice(None)), (1, 8, 6, 5))
    expected = torch.zeros(6, 5, dtype=torch.bool)
    expected[2, :] = True
    assert torch.equal(reach, expected)


def test_the_mlp_mixes_only_the_channels_of_one_raft():
    """Channel i * C / r + j belongs to raft j; the token MLP never crosses rafts."""
    torch.manual_seed(0)
    block = RaftMixingBlock(12, length=4, raft_size=3, vertical=True)
    x = torch.randn(1, 12, 4, 4, requires_grad=True)
    block.mix(x)[0, 5].sum().backward()  # channel 5 = 1 * 4 + 1: raft 1
    reached = (x.grad[0].abs().sum((1, 2)) > 0).tolist()
    assert reached == [c % 4 == 1 for c in range(12)]


def test_other_grids_are_resampled_to_the_built_one():
    torch.manual_seed(0)
    mixer = RaftTokenMixer(8, grid_size=(6, 5)).eval()
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(mixer(x), mixer.horizontal(mixer.vertical(x)))
    for size in ((1, 1), (11, 3), (24, 20)):
        assert mixer(torch.randn(2, 8, *size)).shape == (2, 8, *size)


def test_forward_on_tiny_single_channel_input():
    model = timm.create_model("raftmlp_s", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "size, new_size", [((8, 8), (56, 56)), ((56, 28), (7, 14)), ((1, 5), (3, 2))]
)
def test_matrix_resize_is_bicubic_interpolation(size, new_size):
    """The resampling's two matrix products equal F.interpolate's bicubic, values and gradients."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, *new_size, dtype=torch.float64)
    resized = resize_bicubic(x, new_size)
    expected = F.interpolate(x, size=new_size, mode="bicubic", align_corners=False)
    torch.testing.assert_close(resized, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad((resized * weights).sum(), x)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
