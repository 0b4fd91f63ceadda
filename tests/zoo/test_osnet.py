"""OSNet: the paper's parameter counts, and what makes its bottleneck omni-scale."""

import pytest
import timm
import torch
from torch import nn

from zoo.operators import create_token_mixer
from zoo.operators.omni_scale import ChannelGate, OmniScaleBlock, OmniScaleConv

# Paper (arXiv 1905.00953) Table 1 and width-multiplier table; official model zoo for OSNet-AIN:
# millions, one decimal, counting the layers used at test time (up to the 512-d embedding,
# without the identity classifier): our models with num_classes=0.
PAPER_PARAMS_M = {
    "osnet_x0_25": 0.2,
    "osnet_x0_5": 0.6,
    "osnet_x0_75": 1.3,
    "osnet_x1_0": 2.2,
    "osnet_ain_x1_0": 2.2,
}
# exact counts of the official architecture at test time, which our layers reproduce
OFFICIAL_PARAMS = {
    "osnet_x0_25": 201_864,
    "osnet_x0_5": 630_034,
    "osnet_x0_75": 1_285_754,
    "osnet_x1_0": 2_169_508,
    "osnet_ain_x1_0": 2_169_508,
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    count = _count(timm.create_model(name, num_classes=0, device="meta"))
    assert round(count / 1e6, 1) == PAPER_PARAMS_M[name]
    assert count == OFFICIAL_PARAMS[name]
    # the 1000-class classifier sits on the 512-d embedding, whatever the width
    with_classifier = _count(timm.create_model(name, num_classes=1000, device="meta"))
    assert with_classifier - count == 512 * 1000 + 1000


def _linearise_relus(module: nn.Module) -> nn.Module:
    """Eval mode, with every BN shifted far positive, so that no ReLU ever cuts a gradient path."""
    module.double().eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 100.0)
    return module


def _center_support(module: nn.Module, size: int = 15) -> torch.Tensor:
    """Input pixels that the centre output pixel depends on (gradient support)."""
    in_chs = next(m for m in module.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(1, in_chs, size, size, dtype=torch.float64, requires_grad=True)
    module(x)[0, :, size // 2, size // 2].sum().backward()
    return x.grad[0].abs().sum(0) > 0


def test_stream_t_sees_a_2t_plus_1_window():
    torch.manual_seed(0)
    conv = _linearise_relus(OmniScaleConv(32, num_streams=4))
    for t, stream in enumerate(conv.streams, start=1):
        support = _center_support(stream)
        rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
        assert (rows.max() - rows.min() + 1).item() == 2 * t + 1
        assert (cols.max() - cols.min() + 1).item() == 2 * t + 1
        assert support.sum().item() == (2 * t + 1) ** 2  # the whole window, not a sparse pattern


def test_receptive_field_grows_with_the_number_of_streams():
    torch.manual_seed(0)
    for num_streams in (1, 2, 3, 4):
        conv = _linearise_relus(OmniScaleConv(32, num_streams=num_streams))
        conv.gate = nn.Identity()  # the gate pools globally; without it the support is local
        assert _center_support(conv).sum().item() == (2 * num_streams + 1) ** 2


def test_one_aggregation_gate_is_shared_by_all_streams():
    torch.manual_seed(0)
    block = OmniScaleBlock(32, 64, num_streams=4).eval()
    gates = [m for m in block.modules() if isinstance(m, ChannelGate)]
    assert len(gates) == 1
    gate = gates[0]
    nn.init.constant_(gate.fc1.bias, 1.0)  # a live hidden unit, so the gate depends on its input
    calls, weights = [], []
    gate.register_forward_hook(lambda _m, args, out: calls.append((args[0], out)))
    gate.gate.register_forward_hook(lambda _m, _args, out: weights.append(out))
    x = torch.randn(2, 32, 12, 10)
    with torch.no_grad():
        y = block(x)
        # the one gate saw each stream's output, in order, and their gated sum makes the branch
        hidden = block.conv.reduce(x)
        for (gate_in, _), stream in zip(calls, block.conv.streams, strict=True):
            torch.testing.assert_close(gate_in, stream(hidden))
        fused = sum(out for _, out in calls)
        expected = block.act(block.conv.expand(fused) + block.shortcut(x))
    torch.testing.assert_close(y, expected)
    # shared parameters, input-dependent weighting: each stream gets its own channel weights
    assert len(weights) == 4 and weights[0].shape == (2, 16, 1, 1)
    assert not torch.allclose(weights[0], weights[3])


def test_embedding_is_the_pre_logits_for_every_width():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 32)
    for name, width in (("osnet_x0_25", 128), ("osnet_x1_0", 512)):
        model = timm.create_model(name, num_classes=5).eval()
        assert model.num_features == width and model.head_hidden_size == 512
        with torch.no_grad():
            embedding = model.forward_head(model.forward_features(x), pre_logits=True)
            assert embedding.shape == (2, 512)
            assert (embedding >= 0).all()  # the embedding ends with BN and ReLU
            torch.testing.assert_close(model.get_classifier()(embedding), model(x))
            model.reset_classifier(0)
            torch.testing.assert_close(model(x), embedding)


def test_features_are_the_stem_and_the_three_stages():
    model = timm.create_model("osnet_x0_25", features_only=True, in_chans=1).eval()
    assert model.feature_info.reduction() == [2, 4, 8, 16]
    assert model.feature_info.channels() == [16, 64, 96, 128]
    with torch.no_grad():
        maps = model(torch.randn(1, 1, 64, 32))
    assert [m.shape[-2:] for m in maps] == [(32, 16), (16, 8), (8, 4), (4, 2)]


def test_ain_places_instance_norm_where_the_search_put_it():
    def instance_norms(name):
        model = timm.create_model(name, device="meta")
        return [n for n, m in model.named_modules() if isinstance(m, nn.InstanceNorm2d)]

    assert instance_norms("osnet_x1_0") == []
    assert instance_norms("osnet_ain_x1_0") == [
        "stem.norm",
        "stages.0.blocks.0.conv.expand.1",
        "stages.0.blocks.1.conv.expand.1",
        "stages.1.blocks.1.conv.expand.1",
        "stages.2.blocks.0.conv.expand.1",
    ]


@pytest.mark.parametrize("name", ["osnet_x0_25", "osnet_ain_x1_0"])
def test_trains_on_tiny_single_channel_images(name):
    torch.manual_seed(0)
    model = timm.create_model(name, in_chans=1, num_classes=10).train()
    logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10)
    logits.logsumexp(1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_omni_scale_mixer_keeps_width_and_is_the_bottleneck_branch():
    mixer = create_token_mixer("omni_scale", 64)
    assert isinstance(mixer, OmniScaleConv)
    assert mixer(torch.randn(2, 64, 5, 3)).shape == (2, 64, 5, 3)
