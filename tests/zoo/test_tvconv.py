"""TVConv: a depthwise kernel per position, generated from learned affinity maps."""

import pytest
import timm
import torch
import torch.nn.functional as F

from zoo.operators.tvconv import TVConv, translation_variant_conv2d

# The paper tabulates no parameter counts. These are the official face-recognition MobileNetV2
# `features` (github.com/JierunChen/TVConv, face_recognition/model/mobilenetv2.py, with the
# training script's TVConv settings 4 / 64 / 3), counted by building the official modules.
OFFICIAL_FEATURE_PARAMS = {
    "mobilenetv2_tvconv_010": 16_104_664,
    "mobilenetv2_tvconv_020": 19_413_544,
    "mobilenetv2_tvconv_030": 23_551_648,
    "mobilenetv2_tvconv_050": 29_814_560,
    "mobilenetv2_tvconv_100": 49_443_872,
}


@pytest.mark.parametrize("name", OFFICIAL_FEATURE_PARAMS)
def test_parameter_count_matches_the_official_model(name):
    model = timm.create_model(name, device="meta", num_classes=0)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - OFFICIAL_FEATURE_PARAMS[name]) / OFFICIAL_FEATURE_PARAMS[name] < 0.01
    assert count == OFFICIAL_FEATURE_PARAMS[name]


@pytest.mark.parametrize("stride", [1, 2])
def test_identical_kernels_everywhere_is_a_depthwise_convolution(stride):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 13, 10)
    weight = torch.randn(6, 1, 3, 3)
    expected = F.conv2d(x, weight, padding=1, stride=stride, groups=6)
    kernels = weight.view(6, 3, 3, 1, 1).expand(-1, -1, -1, *expected.shape[-2:])
    torch.testing.assert_close(translation_variant_conv2d(x, kernels, stride), expected)


def _trained_like(conv: TVConv) -> TVConv:
    with torch.no_grad():
        conv.affinity_maps.normal_()  # ones at init: only the borders differ before training
    return conv


def test_kernels_differ_between_positions_and_shifts_do_not_commute():
    torch.manual_seed(0)
    conv = _trained_like(TVConv(4, layout_size=12, hidden_chans=8, hidden_layers=1)).eval()
    field = conv.kernel_field(12, 12)
    assert field.shape == (4, 3, 3, 12, 12)
    interior = field[..., 3:9, 3:9].flatten(3)
    assert (interior - interior[..., :1]).abs().amax() > 0.1  # no two interior kernels alike
    x = torch.zeros(1, 4, 12, 12)
    x[..., 4:7, 4:7] = torch.randn(1, 4, 3, 3)  # a pattern well inside the map
    shifted = torch.roll(x, shifts=(2, 1), dims=(2, 3))
    with torch.no_grad():
        moved_output = torch.roll(conv(x), shifts=(2, 1), dims=(2, 3))
        output_of_moved = conv(shifted)
    assert (output_of_moved - moved_output).abs().amax() > 0.1  # translation variant
    # a plain depthwise conv of the same size is translation equivariant on this input
    plain = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    with torch.no_grad():
        torch.testing.assert_close(plain(shifted), torch.roll(plain(x), (2, 1), (2, 3)))


def test_kernel_field_is_generated_at_the_layout_and_resized_to_the_input():
    torch.manual_seed(0)
    conv = _trained_like(TVConv(3, stride=2, layout_size=(6, 5), hidden_chans=8, hidden_layers=1))
    native = conv.weight_generator(conv.affinity_maps).view(3, 3, 3, 6, 5)
    torch.testing.assert_close(conv.kernel_field(6, 5), native)  # the paper's operator as is
    x = torch.randn(2, 3, 11, 9)  # stride 2 -> 6 x 5: the layout itself
    expected = translation_variant_conv2d(x, native, 2)
    torch.testing.assert_close(conv(x), expected)
    for size in [(32, 20), (1, 1)]:  # any other input: the field is resized
        out = conv(torch.randn(1, 3, *size))
        assert out.shape == (1, 3, (size[0] + 1) // 2, (size[1] + 1) // 2)


def test_kernels_do_not_depend_on_the_input():
    torch.manual_seed(0)
    conv = _trained_like(TVConv(2, layout_size=8, hidden_chans=8, hidden_layers=1))
    x, y = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 8)
    # linear in the input: conv(x + y) = conv(x) + conv(y), unlike a dynamic convolution
    torch.testing.assert_close(conv(x + y), conv(x) + conv(y), rtol=1e-4, atol=1e-5)


def test_tiny_single_channel_input():
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv2_tvconv_010", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
