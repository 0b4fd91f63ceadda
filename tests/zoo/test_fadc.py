"""FADC: a modulated deformable conv on a per-pixel dilated grid, with AdaKern and FreqSelect."""

import pytest
import timm
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from zoo.operators.fadc import (
    AdaptiveKernel,
    FrequencyAdaptiveDilatedConv,
    FrequencySelection,
    low_pass_mask,
)

RESNET50 = 25_557_032  # plain ResNet-50 (He et al. 2016), timm's resnet50


def _official_fadc_params(channels: int) -> int:
    """Parameters of one official AdaptiveDilatedConv(C, C, 3) of the R50 config, by layer."""
    hidden = max(int(channels * 0.0625), 16)
    attention = channels * hidden + 2 * hidden + 2 * (hidden * channels + channels)
    return (
        9 * channels**2  # kernel (no bias in ResNet)
        + 2 * attention  # OMNI_ATT1 / OMNI_ATT2: fc, bn, channel_fc, filter_fc
        + 9 * channels
        + 1  # conv_offset: one rate map
        + 81 * channels
        + 9  # conv_mask: nine tap gates
        + 3 * (9 * channels + 1)  # FreqSelect: one 3x3 weight conv per band (k_list 2, 4, 8)
    )


def test_parameter_count_matches_the_official_modules():
    """The paper tabulates no backbone count: check against the official layer shapes."""
    model = timm.create_model("resnet50_fadc", device="meta")
    count = sum(p.numel() for p in model.parameters())
    resnet50c = sum(p.numel() for p in timm.create_model("resnet50c", device="meta").parameters())
    added = sum(
        n * (_official_fadc_params(c) - 9 * c * c) for c, n in ((128, 4), (256, 6), (512, 3))
    )
    assert count == resnet50c + added == 26_502_641
    assert abs(count - RESNET50) / RESNET50 < 0.04  # FADC adds 3.7% to ResNet-50
    assert sum(isinstance(m, FrequencyAdaptiveDilatedConv) for m in model.modules()) == 13


def _neutralise(conv: FrequencyAdaptiveDilatedConv, extra_dilation: float = 0.0) -> None:
    """AdaKern scales 1, FreqSelect identity (its init), rate fixed, tap gates 1."""
    with torch.no_grad():
        for attention in (conv.adaptive_kernel.low, conv.adaptive_kernel.high):
            for head in (attention.in_fc, attention.out_fc):
                if head is not None:
                    head.weight.zero_()
                    head.bias.zero_()  # 2 sigmoid(0) = 1
        conv.adaptive_dilation.conv.weight.zero_()
        conv.adaptive_dilation.conv.bias.fill_(extra_dilation)
        conv.modulation.weight.zero_()
        conv.modulation.bias.fill_(40.0)  # sigmoid(40) = 1 in float32


@pytest.mark.parametrize("stride, groups", [(1, 1), (2, 1), (1, 8), (2, 4)])
def test_neutralised_fadc_is_the_plain_convolution(stride, groups):
    torch.manual_seed(0)
    fadc = FrequencyAdaptiveDilatedConv(8, 8, 3, stride, groups=groups, padding_mode="zeros").eval()
    _neutralise(fadc)
    with torch.no_grad():
        fadc.bias.normal_()
    x = torch.randn(2, 8, 11, 10)
    expected = F.conv2d(x, fadc.weight, fadc.bias, stride, padding=1, groups=groups)
    torch.testing.assert_close(fadc(x), expected, rtol=1e-4, atol=1e-5)
    # the official replicate padding: the same conv on the edge-replicated input
    fadc.padding_mode = "replicate"
    expected = F.conv2d(
        F.pad(x, (1,) * 4, mode="replicate"), fadc.weight, fadc.bias, stride, groups=groups
    )
    torch.testing.assert_close(fadc(x), expected, rtol=1e-4, atol=1e-5)


def test_predicted_rate_moves_the_taps_onto_a_dilated_grid():
    """A rate map of 1 everywhere reads the taps at 2 x (i, j): the dilation-2 convolution."""
    torch.manual_seed(0)
    fadc = FrequencyAdaptiveDilatedConv(6, 4, 3, padding_mode="zeros").eval()
    _neutralise(fadc, extra_dilation=1.0)
    x = torch.randn(1, 6, 12, 12)
    expected = F.conv2d(x, fadc.weight, fadc.bias, padding=2, dilation=2)
    torch.testing.assert_close(fadc(x), expected, rtol=1e-4, atol=1e-5)


def test_dilation_varies_per_pixel_with_the_content_and_learns():
    torch.manual_seed(0)
    fadc = FrequencyAdaptiveDilatedConv(4, 4, 3, dilation=2)
    x = torch.randn(1, 4, 16, 16)
    start = fadc.dilation_map(x)
    torch.testing.assert_close(start, torch.full_like(start, 2 + 2e-4))  # the initial rate d
    with torch.no_grad():
        fadc.adaptive_dilation.conv.weight.normal_(std=0.3)  # as after training
    ramp = torch.linspace(0, 1, 16).expand(1, 4, 16, 16)
    textured = ramp + (torch.rand(1, 4, 16, 16) > 0.5).float() * ramp
    rates = fadc.dilation_map(textured)
    assert rates.shape == (1, 1, 16, 16) and rates.std() > 0.05 and (rates >= 1).all()
    flat = fadc.dilation_map(torch.full((1, 4, 16, 16), 0.7))
    torch.testing.assert_close(flat, flat[..., :1, :1].expand_as(flat))  # uniform in, uniform out
    fadc(textured).square().mean().backward()  # a batch of one trains too
    assert fadc.adaptive_dilation.conv.weight.grad.abs().sum() > 0


def test_adakern_rescales_the_low_and_high_frequency_parts_apart():
    torch.manual_seed(0)
    adakern = AdaptiveKernel(4, 6).eval()
    weight = torch.randn(6, 4, 3, 3)
    low_value, high_value = 0.5, 1.5  # 2 sigmoid(logit) = value on the input side, 1 on output
    with torch.no_grad():
        for attention, value in ((adakern.low, low_value), (adakern.high, high_value)):
            attention.in_fc.weight.zero_()
            attention.in_fc.bias.fill_(torch.logit(torch.tensor(value / 2)).item())
            attention.out_fc.weight.zero_()
            attention.out_fc.bias.zero_()
    kernels = adakern(torch.randn(2, 4, 5, 5), weight)
    mean = weight.mean((-2, -1), keepdim=True)
    expected = low_value * mean + high_value * (weight - mean)
    torch.testing.assert_close(kernels, expected.expand(2, -1, -1, -1, -1))
    # the DC part of each kernel moved by low_value alone
    torch.testing.assert_close(kernels[0].mean((-2, -1)), low_value * weight.mean((-2, -1)))


def test_freqselect_starts_as_identity_and_can_drop_a_band():
    torch.manual_seed(0)
    select = FrequencySelection(3, band_divisors=(2, 4))
    x = torch.randn(2, 3, 15, 13)  # odd sizes: the masks are symmetric about DC
    torch.testing.assert_close(select(x), x, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        select.band_weights[0].bias.fill_(-40.0)  # weight 2 sigmoid(-40) = 0 for the top band
    out = select(x)
    spectrum = torch.fft.fftshift(torch.fft.fft2(out, norm="ortho"), dim=(-2, -1)).abs()
    outside = 1 - low_pass_mask(15, 13, 2, x.device)
    assert spectrum.mul(outside).max() < 1e-4  # only the central half of the spectrum is left
    assert torch.fft.fft2(x).abs().mul(torch.fft.ifftshift(outside)).max() > 1


def test_tiny_single_channel_input():
    torch.manual_seed(0)
    model = timm.create_model("resnet50_fadc", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def _per_sample_kernel_fadc(fadc: FrequencyAdaptiveDilatedConv, x: torch.Tensor) -> torch.Tensor:
    """FADC as the official code runs it: AdaKern's per-sample kernels, one conv per sample."""
    x = fadc.freq_select(x)
    kernels = fadc.adaptive_kernel(x, fadc.weight)
    padded = fadc._pad(x)
    offsets = fadc._sampling_offsets(fadc.adaptive_dilation(padded))
    mask = torch.sigmoid(fadc.modulation(padded))
    outputs = [
        deform_conv2d(
            padded[b : b + 1],
            offsets[b : b + 1],
            kernels[b],
            fadc.bias,
            stride=fadc.stride,
            mask=mask[b : b + 1],
        )
        for b in range(x.shape[0])
    ]
    return torch.cat(outputs)


@pytest.mark.parametrize(
    "in_chs, out_chs, stride, groups, deform_groups",
    [(8, 6, 1, 1, 1), (8, 8, 2, 1, 2), (8, 12, 1, 4, 2), (8, 8, 1, 8, 1)],
)
def test_factored_adakern_equals_the_per_sample_kernels(
    in_chs, out_chs, stride, groups, deform_groups
):
    """FADC applies AdaKern as channel scales; the output and every gradient are unchanged.

    In float64, so that the two orders of summation agree to far below any real difference.
    """
    torch.manual_seed(0)
    fadc = FrequencyAdaptiveDilatedConv(
        in_chs, out_chs, 3, stride, groups=groups, deform_groups=deform_groups
    ).double()
    with torch.no_grad():  # move every branch off its initial value, as after training
        for name, param in fadc.named_parameters():
            if "bn" not in name:
                param.add_(torch.randn_like(param) * 0.3)
    x = torch.randn(3, in_chs, 9, 10, dtype=torch.float64)
    factored = fadc(x)
    factored_grads = torch.autograd.grad(factored.square().sum(), list(fadc.parameters()))
    reference = _per_sample_kernel_fadc(fadc, x)
    reference_grads = torch.autograd.grad(reference.square().sum(), list(fadc.parameters()))
    torch.testing.assert_close(factored, reference, rtol=1e-9, atol=1e-10)
    for got, expected in zip(factored_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
