"""SReT: the paper's parameter counts, weight sharing across recursions, and sliced attention."""

import pytest
import timm
import torch

from zoo.backbones.sret import RecursiveUnit, SlicedAttention, equal_group_count

# Table of the official repository (README, "#params"), as in the paper's ImageNet table
PAPER_PARAMS_M = {"sret_t": 4.8, "sret_t_wo_slice": 4.8}
# the official code's exact count, which our layers reproduce parameter for parameter
OFFICIAL_PARAMS = {"sret_t": 4_755_979, "sret_t_wo_slice": 4_755_979}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    model = timm.create_model(name, device="meta")
    assert _count(model) / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.01)
    assert _count(model) == OFFICIAL_PARAMS[name]


def test_recursions_reuse_the_same_block_parameters():
    """Every recursion runs the very same block (same parameter objects): only NLLs are added."""
    torch.manual_seed(0)
    units = {
        n: RecursiveUnit(
            32, 2, recursions=n, groups=4, recursive_groups=2, mlp_ratio=2.0, nll_mlp_ratio=1.0
        )
        for n in (1, 2, 4)
    }
    block, nll = _count(units[1].block), _count(units[1].projections[0])
    for n, unit in units.items():
        assert _count(unit) == block + n * nll  # the block is counted once, however deep
        calls: list[torch.nn.Module] = []
        handle = unit.block.register_forward_hook(lambda m, i, o, calls=calls: calls.append(m))
        unit(torch.randn(2, 16, 32)).sum().backward()
        handle.remove()
        assert len(calls) == n and all(m is unit.block for m in calls)
        # the shared weights collect gradient from every application: one tensor, one .grad
        assert unit.block.attn.qkv.weight.grad is not None


def test_a_recursion_changes_the_output_without_new_block_weights():
    """Unrolling the recursion by hand with the same block gives the unit's output."""
    torch.manual_seed(0)
    unit = RecursiveUnit(16, 2, 2, groups=1, recursive_groups=1, mlp_ratio=2.0, nll_mlp_ratio=1.0)
    unit.eval()
    x = torch.randn(1, 9, 16)
    expected = unit.projections[1](unit.block(unit.projections[0](unit.block(x))))
    torch.testing.assert_close(unit(x), expected)


def test_sliced_attention_stays_within_groups():
    """With 4 contiguous groups, a token's output depends only on the tokens of its quarter."""
    torch.manual_seed(0)
    attn = SlicedAttention(8, num_heads=2).eval()
    x = torch.randn(1, 16, 8, requires_grad=True)
    attn(x, groups=4)[0, 5].sum().backward()
    reached = x.grad[0].abs().sum(-1) > 0
    assert reached.tolist() == [4 <= i < 8 for i in range(16)]


def test_shuffled_groups_are_strided_at_inference_and_random_in_training():
    torch.manual_seed(0)
    attn = SlicedAttention(8, num_heads=2).eval()
    x = torch.randn(1, 16, 8, requires_grad=True)
    attn(x, groups=2, shuffle=True)[0, 3].sum().backward()
    reached = (x.grad[0].abs().sum(-1) > 0).tolist()
    assert reached == [i % 2 == 1 for i in range(16)]  # token 3 is in the odd group
    attn.train()
    reaches = set()
    for _ in range(5):
        x.grad = None
        attn(x, groups=2, shuffle=True)[0, 3].sum().backward()
        reached = x.grad[0].abs().sum(-1) > 0
        assert reached.sum() == 8
        reaches.add(tuple(reached.tolist()))
    assert len(reaches) > 1


def test_group_count_falls_to_a_divisor():
    assert equal_group_count(784, 8) == 8
    assert equal_group_count(49, 8) == 7
    assert equal_group_count(1, 4) == 1


def test_forward_on_tiny_single_channel_input():
    model = timm.create_model("sret_t", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
        assert model(torch.randn(1, 1, 7, 5)).shape == (1, 10)
