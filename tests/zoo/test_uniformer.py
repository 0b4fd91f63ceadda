"""UniFormer: the paper's parameter counts, and local vs global relation aggregators."""

import pytest
import timm
import torch
from timm.layers import Attention

from zoo.backbones.uniformer import GlobalBlock, LocalBlock
from zoo.operators import create_token_mixer
from zoo.operators.uniformer import LocalMHRA

# Official model-zoo table (github.com/Sense-X/UniFormer image_classification README; paper
# Table 2): millions, to the nearest million, so the count must round to the table's figure.
PAPER_PARAMS_M = {"uniformer_small": 22, "uniformer_small_plus": 24}
# the official code's exact counts, which our layers reproduce parameter for parameter
OFFICIAL_PARAMS = {"uniformer_small": 21_545_256, "uniformer_small_plus": 24_032_552}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6) == PAPER_PARAMS_M[name]
    assert count == OFFICIAL_PARAMS[name]


def test_local_relation_aggregator_sees_exactly_a_5x5_neighbourhood():
    torch.manual_seed(0)
    mhra = create_token_mixer("uniformer_local", 8)
    assert isinstance(mhra, LocalMHRA)
    x = torch.randn(1, 8, 11, 11, requires_grad=True)
    mhra(x)[0, :, 4, 6].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    expected = torch.zeros(11, 11, dtype=torch.bool)
    expected[2:7, 4:9] = True
    assert torch.equal(support, expected)
    # the affinity is a learnable depthwise conv: a gradient step changes it
    assert mhra.attn.groups == 8 and mhra.attn.weight.grad.abs().sum() > 0


def test_local_mhra_in_shallow_stages_global_self_attention_in_deep_stages():
    model = timm.create_model("uniformer_small", device="meta")
    kinds = [{type(b) for b in stage.blocks} for stage in model.stages]
    assert kinds == [{LocalBlock}, {LocalBlock}, {GlobalBlock}, {GlobalBlock}]
    assert isinstance(model.stages[2].blocks[0].attn, Attention)
    assert model.stages[2].blocks[0].attn.num_heads == 320 // 64
    assert not [n for n, _ in model.named_parameters() if "pos_embed" in n and "proj" not in n]


def test_global_mhra_mixes_the_whole_map():
    torch.manual_seed(0)
    block = GlobalBlock(64, head_dim=32).eval()
    x = torch.randn(1, 64, 6, 6, requires_grad=True)
    block(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(0) > 0).all()


def test_tiny_inputs_any_channels():
    for name in PAPER_PARAMS_M:
        model = timm.create_model(name, in_chans=1, num_classes=10).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("uniformer_small", features_only=True).eval()
    with torch.no_grad():
        maps = features(torch.randn(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
