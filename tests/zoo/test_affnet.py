"""AFFNet: the paper's parameter counts, and AFF filtering as a global circular convolution."""

import pytest
import timm
import torch

from zoo.backbones.affnet import AffTransformerBlock
from zoo.operators.aff import AdaptiveFrequencyFilter

# Official results table (github.com/microsoft/TokenMixers, Adaptive Frequency Filters README;
# the paper's ImageNet-1K table), millions cut to one decimal. These are the official profiler's
# sums (1.428, 2.643, 5.551M), which leave out the AFF transformer blocks' norms and mask biases.
PAPER_PARAMS_M = {"affnet_et": 1.4, "affnet_t": 2.6, "affnet": 5.5}
# every parameter of the official model (counted on its code), which ours reproduce exactly
OFFICIAL_PARAMS = {"affnet_et": 1_436_264, "affnet_t": 2_654_232, "affnet": 5_568_696}


def _profiled_count(model: torch.nn.Module) -> int:
    """Parameters as the official profiler sums them."""
    left_out = 0
    for block in model.modules():
        if isinstance(block, AffTransformerBlock):
            left_out += sum(p.numel() for p in block.norm1.parameters())
            left_out += sum(p.numel() for p in block.norm2.parameters())
            left_out += block.token_mixer.fc1.bias.numel() + block.token_mixer.fc2.bias.numel()
    return sum(p.numel() for p in model.parameters()) - left_out


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]
    assert _profiled_count(model) // 100_000 / 10 == PAPER_PARAMS_M[name]


def _circular_convolution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per sample and channel, `y[i, j] = sum_(a, b) kernel[a, b] x[i - a, j - b]` (indices mod size),
    by explicit roll-and-sum in the spatial domain."""
    height, width = x.shape[-2:]
    return sum(
        kernel[..., a, b, None, None] * torch.roll(x, shifts=(a, b), dims=(-2, -1))
        for a in range(height)
        for b in range(width)
    )


@pytest.mark.parametrize("size", [(6, 5), (4, 8), (3, 3), (1, 1)])
def test_aff_is_a_global_circular_convolution_with_the_mask_kernel(size):
    """AFF(x) - x is x circularly convolved with iFFT(mask): a kernel as large as the map."""
    torch.manual_seed(0)
    mixer = AdaptiveFrequencyFilter(16).double().eval()
    with torch.no_grad():  # larger weights than the init, so the mask is far from zero
        for p in mixer.parameters():
            p.normal_(std=0.5)
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    with torch.no_grad():
        mask = mixer.frequency_mask(torch.fft.rfft2(x, norm="ortho"))
        kernel = torch.fft.irfft2(mask, s=size)  # (B, C, H, W): one kernel per sample and channel
        expected = _circular_convolution(x, kernel)
        torch.testing.assert_close(mixer(x) - x, expected)
    assert expected.abs().mean() > 0.1  # the filter is not trivially zero
    if size != (1, 1):  # semantic-adaptive: each sample gets its own kernel
        assert not torch.allclose(kernel[0], kernel[1])


def test_aff_keeps_half_precision_inputs_in_their_dtype():
    mixer = AdaptiveFrequencyFilter(8)
    x = torch.randn(1, 8, 5, 7).bfloat16()
    assert mixer(x).dtype == torch.bfloat16


def test_tiny_single_channel_input():
    model = timm.create_model("affnet_et", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
