"""FFNet: the paper's parameter counts, and what defines FFNified attention."""

import pytest
import timm
import torch
from timm.utils import reparameterize_model
from torch import nn

from zoo.operators.ffnet import FFNifiedAttention, RepDwConv

# ImageNet-1K table of the official repository (README, "#params"), as in the paper; it counts
# the re-parameterized inference model
PAPER_PARAMS_M = {"ffnet_1": 13.7, "ffnet_2": 26.9}
# the official code's exact counts: training graph, and after its own conv + BN fusion
OFFICIAL_PARAMS = {"ffnet_1": 13_775_656, "ffnet_2": 27_208_408}
OFFICIAL_FUSED_PARAMS = {"ffnet_1": 13_660_152, "ffnet_2": 26_908_440}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    assert _count(model) == OFFICIAL_PARAMS[name]
    fused = reparameterize_model(model)
    assert _count(fused) / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.01)
    assert _count(fused) == OFFICIAL_FUSED_PARAMS[name]


def _randomize_batchnorms(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -1, 1)


def test_reparameterized_mixer_equals_the_training_one():
    """The 7x7 + 3x3 branches and every BN fold into plain convs with the same function."""
    torch.manual_seed(0)
    mixer = FFNifiedAttention(16).eval()
    _randomize_batchnorms(mixer)
    fused = reparameterize_model(mixer)
    assert isinstance(fused.key, nn.Conv2d) and fused.key.kernel_size == (7, 7)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 16, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), mixer(x), rtol=1e-4, atol=1e-5)


def test_strided_multiplier_branch_fuses_too():
    """FFNet's downsampling RepDwConv (stride 2, two outputs per input channel)."""
    torch.manual_seed(0)
    conv = RepDwConv(8, 16, 7, stride=2).eval()
    _randomize_batchnorms(conv)
    x = torch.randn(1, 8, 13, 10)
    with torch.no_grad():
        torch.testing.assert_close(conv.fuse()(x), conv(x), rtol=1e-4, atol=1e-5)


def test_ffnified_attention_is_query_key_gelu_value():
    """Query 1x1 conv, key depthwise conv, GELU instead of softmax, value depthwise conv."""
    torch.manual_seed(0)
    mixer = FFNifiedAttention(8, key_kernel=7, value_kernel=3).eval()
    x = torch.randn(2, 8, 9, 9)
    expected = mixer.value(nn.functional.gelu(mixer.key(mixer.query(x))))
    torch.testing.assert_close(mixer(x), expected)
    assert isinstance(mixer.value, nn.Conv2d) and mixer.value.groups == 8


def test_mixing_is_local_to_the_key_and_value_kernels():
    """The key (7x7) and value (7x7) memories reach exactly 6 pixels each way: a 13x13 field."""
    torch.manual_seed(0)
    mixer = FFNifiedAttention(4).eval()
    x = torch.randn(1, 4, 21, 21, requires_grad=True)
    mixer(x)[0, :, 10, 10].sum().backward()
    reach = x.grad[0].abs().sum(0) > 0
    expected = torch.zeros(21, 21, dtype=torch.bool)
    expected[4:17, 4:17] = True
    assert torch.equal(reach, expected)


def test_forward_on_tiny_single_channel_input():
    model = timm.create_model("ffnet_1", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
