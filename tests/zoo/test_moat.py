"""MOAT: the paper's parameter counts, and what a MOAT block is."""

import pytest
import timm
import torch
from timm.layers import SEModule

from zoo.backbones.moat import MBConv, MOATBlock, RelPosAttention, relative_position_bias

# Official checkpoint tables (deeplab2 g3doc/projects/moat_imagenet_pretrained_checkpoints.md;
# paper Tables 2-3), millions to one decimal, with and without the relative position embedding.
PAPER_PARAMS_M = {"tiny_moat_0": 3.4, "tiny_moat_1": 5.1, "tiny_moat_2": 9.8, "moat_0": 27.8}
PAPER_PARAMS_NO_PE_M = {"tiny_moat_0": 3.3, "tiny_moat_1": 5.1, "tiny_moat_2": 9.7, "moat_0": 27.8}


def _count(name: str, **kwargs) -> int:
    model = timm.create_model(name, device="meta", **kwargs)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    count = _count(name)
    # the tables round to 0.1M; tiny-MOAT-0's 3.36M is 1.3% under its rounded 3.4M
    assert round(count / 1e5) == round(PAPER_PARAMS_M[name] * 10)
    assert abs(count / (PAPER_PARAMS_M[name] * 1e6) - 1) < 0.015
    no_pe = _count(name, pos_embed_sizes=(None,) * 4)
    assert round(no_pe / 1e5) == round(PAPER_PARAMS_NO_PE_M[name] * 10)


def test_moat_block_is_mbconv_without_se_then_attention_on_the_strided_map():
    torch.manual_seed(0)
    model = timm.create_model("tiny_moat_0").eval()
    assert isinstance(model.stages[1].blocks[0], MBConv)
    assert isinstance(model.stages[1].blocks[0].se, SEModule)  # MBConv stages keep SE
    block = model.stages[2].blocks[0]  # first MOAT block: strides by 2
    assert isinstance(block, MOATBlock)
    assert isinstance(block.mbconv.se, torch.nn.Identity)  # the paper removes SE

    seen = {}
    block.attn.qkv.register_forward_pre_hook(lambda m, args: seen.update(tokens=args[0].shape))
    x = torch.randn(2, 64, 8, 10)
    with torch.no_grad():
        y = block(x)
        downsampled = block.mbconv(x)
        expected = downsampled + block.attn(block.norm(downsampled))
    assert downsampled.shape == (2, 128, 4, 5)
    assert seen["tokens"] == (2, 8 * 10 // 2**2, 128)  # attention on H*W/stride^2 tokens
    torch.testing.assert_close(y, expected)


def test_relative_position_bias_depends_only_on_the_offset_and_resizes():
    torch.manual_seed(0)
    table = torch.randn(2, 13, 13)  # a 7x7 window's table
    bias = relative_position_bias(table, 7, 7).reshape(2, 7, 7, 7, 7)
    # at the table's own size, bias[query (i, j), key (y, x)] = table[y - i + 6, x - j + 6]
    torch.testing.assert_close(bias[:, 2, 3, 5, 1], table[:, 5 - 2 + 6, 1 - 3 + 6])
    resized = relative_position_bias(table, 3, 5).reshape(2, 3, 5, 3, 5)
    torch.testing.assert_close(resized[:, 0, 0, 1, 2], resized[:, 1, 2, 2, 4])  # same offset
    assert not torch.allclose(resized[:, 0, 0, 1, 2], resized[:, 0, 0, 2, 1])


def test_window_attention_clamps_pads_and_stays_in_its_window():
    torch.manual_seed(0)
    windowed = RelPosAttention(64, pos_embed_size=7, window_size=4).eval()
    full = RelPosAttention(64, pos_embed_size=7).eval()
    full.load_state_dict(windowed.state_dict())
    x = torch.randn(1, 64, 3, 3, requires_grad=True)
    # a window larger than the map is clamped to it: global attention
    torch.testing.assert_close(windowed(x), full(x))
    x = torch.randn(1, 64, 6, 7, requires_grad=True)  # 4x4 windows, padded to 8x8
    y = windowed(x)
    assert y.shape == x.shape
    y[0, :, 5, 6].sum().backward()  # a pixel of the bottom-right (padded) window
    support = x.grad[0].abs().sum(0) > 0
    assert support[4:, 4:].all() and not support[:4].any() and not support[:, :4].any()


def test_tiny_inputs_any_channels():
    model = timm.create_model("tiny_moat_0", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("tiny_moat_0", features_only=True).eval()
    with torch.no_grad():
        maps = features(torch.randn(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
