"""The restoration networks: paper parameter counts, defining properties, and their contract."""

import pytest
import timm
import torch
import torch.nn.functional as F

import zoo  # noqa: F401  (registers the networks)
from zoo.backbones.restoration_nets import RESTORATION_NOTE
from zoo.operators import list_token_mixers
from zoo.operators.cfsr import EdgeConv3x3, LargeKernelDWConv, edge_filters, reparameterize
from zoo.operators.weighted_conv import WeightedConv2d

RESTORATION_NETS = sorted(
    n for n in timm.list_models() if RESTORATION_NOTE in (timm.get_pretrained_cfg(n).notes or ())
)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_networks_are_registered():
    assert {"espcn", "cfsr", "dncnn", "mirnet", "mirnet_tiny", "mixer_body"} <= set(
        RESTORATION_NETS
    )


# (model, kwargs, the paper's count, where the paper gives it)
PAPER_COUNTS = [
    # ESPCN, Section 3: (5x5, 64), (3x3, 32), 3x3 to r^2 C channels, on Y (C = 1); the paper
    # prints no total, so its specification's exact count is the reference
    ("espcn", dict(in_chans=1, scale=3), 22_729),
    # CFSR, inference (re-parameterised) network: 291K at x2 (abstract: 26% below
    # ShuffleMixer's 394K) and 307K at x4 (results table, official README)
    ("cfsr", dict(scale=2), 291_000),
    ("cfsr", dict(scale=4), 307_000),
    # DnCNN-S, grey-scale, 17 layers: 556K
    ("dncnn", dict(in_chans=1), 556_000),
    # MIRNet as released (3 RRG x 2 MRB, width 64): 31.8M (MIRNet-v2 paper, arXiv 2205.01649)
    ("mirnet", dict(), 31_800_000),
]


@pytest.mark.parametrize("name, kwargs, paper", PAPER_COUNTS)
def test_parameter_count_matches_the_paper(name, kwargs, paper):
    model = timm.create_model(name, device="meta", **kwargs)
    if hasattr(model, "reparameterize"):
        model.reparameterize()
    assert abs(count(model) - paper) / paper < 0.01, count(model)


def test_espcn_is_the_papers_three_layers_with_tanh():
    model = timm.create_model("espcn", in_chans=1, scale=3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (1, 64, 5), (64, 32, 3), (32, 9, 3),
    ]  # fmt: skip
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.modules()) == 2


def test_espcn_sub_pixel_layer_is_a_periodic_shuffle():
    """HR pixel (r*i + a, r*j + b) of channel c is LR feature c*r^2 + a*r + b at (i, j)."""
    torch.manual_seed(0)
    r = 3
    model = timm.create_model("espcn", in_chans=2, scale=r).eval()
    x = torch.rand(1, 2, 5, 4)
    with torch.no_grad():
        features = model.subpixel(model.features(x))
        out = model(x)
    c, a, b, i, j = 1, 2, 0, 3, 1
    assert torch.equal(out[0, c, r * i + a, r * j + b], features[0, c * r * r + a * r + b, i, j])


def test_cfsr_edge_branch_is_sobel_and_laplacian_filtering():
    """The merged edge-aware kernel computes conv3x3 + scaled Sobel-x, Sobel-y, Laplacian."""
    torch.manual_seed(0)
    conv = EdgeConv3x3(4)
    with torch.no_grad():
        conv.edge_scale.normal_()  # make the edge branches matter
    x = torch.randn(2, 4, 9, 7)
    branches = F.conv2d(x, conv.weight, conv.bias, padding=1, groups=4)
    for k, fixed in enumerate(edge_filters()):
        kernel = conv.edge_scale[k].view(4, 1, 1, 1) * fixed.expand(4, 1, 3, 3)
        branches = branches + F.conv2d(x, kernel, conv.edge_bias[k], padding=1, groups=4)
    torch.testing.assert_close(conv(x), branches)
    sobel_x = edge_filters()[0]
    assert sobel_x.tolist() == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]


def test_cfsr_reparameterization_keeps_the_output():
    torch.manual_seed(0)
    model = timm.create_model("cfsr", scale=2, depths=(2,), embed_dim=16)
    for module in model.modules():
        if isinstance(module, EdgeConv3x3):
            torch.nn.init.normal_(module.edge_scale)
        if hasattr(module, "gamma"):  # layer scales: let the blocks contribute
            torch.nn.init.constant_(module.gamma, 0.5)
    model.eval()
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        before = model(x)
        reparameterize(model)
        after = model(x)
    assert not any(isinstance(m, (EdgeConv3x3, LargeKernelDWConv)) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_untrained_dncnn_is_the_identity_and_learns_the_residual():
    """Its last layer starts at zero: the output is the input, y - 0, until it learns the noise."""
    model = timm.create_model("dncnn", in_chans=1).eval()
    x = torch.rand(1, 1, 10, 9)
    with torch.no_grad():
        assert torch.equal(model(x), x)
        model.body[-1].bias.fill_(0.25)  # a predicted residual is subtracted
        torch.testing.assert_close(model(x), x - 0.25)


def test_untrained_dncnn_middle_layers_pass_features_through():
    """Identity start: the 15 conv-BN-ReLU layers map the first layer's features to themselves."""
    model = timm.create_model("dncnn", in_chans=1).eval()  # BN at its initial statistics
    x = torch.rand(1, 1, 12, 11)
    with torch.no_grad():
        features = model.body[:2](x)
        passed = model.body[2:-1](features)
    torch.testing.assert_close(passed, features, rtol=1e-4, atol=1e-6)


def test_weighted_dncnn_swaps_every_conv_and_keeps_the_parameters():
    plain = timm.create_model("dncnn", in_chans=1, device="meta")
    weighted = timm.create_model("dncnn", in_chans=1, conv="weighted", device="meta")
    convs = [m for m in weighted.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 17 and all(isinstance(c, WeightedConv2d) for c in convs)
    assert count(weighted) == count(plain)


def test_mirnet_columns_share_their_units_as_released():
    model = timm.create_model("mirnet_tiny", device="meta")
    block = model.body[0].body[0]
    assert len(block.units) == 3  # one DAU per stream, reused by both columns


def test_mixer_body_starts_as_the_bicubic_upscale():
    model = timm.create_model("mixer_body", mixer="pooling", scale=2, dim=16, depth=1).eval()
    x = torch.rand(1, 3, 7, 5)
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bicubic)


@pytest.mark.parametrize("mixer", list_token_mixers())
def test_mixer_body_takes_any_grid_mixer(mixer):
    model = timm.create_model("mixer_body", mixer=mixer, scale=3, dim=32, depth=1, in_chans=1)
    out = model(torch.rand(1, 1, 5, 6))
    assert out.shape == (1, 1, 15, 18)
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", RESTORATION_NETS)
def test_restoration_contract(name):
    meta = timm.create_model(name, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    assert meta.restoration_net and meta.in_chans == timm.get_pretrained_cfg(name).input_size[0]
    with pytest.raises(TypeError):
        timm.create_model(name, device="meta", not_an_argument=1)
    with pytest.raises(ValueError, match="restoration network.*task=super_resolution"):
        timm.create_model(name, device="meta", num_classes=10)
    with pytest.raises(ValueError, match="features_only"):
        timm.create_model(name, device="meta", features_only=True)
    if name == "mirnet":  # the paper's size: too slow for a forward here
        return
    torch.manual_seed(0)
    model = timm.create_model(name, in_chans=1, scale=2).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 7, 5))
    assert out.shape == (1, 1, 14, 10) and torch.isfinite(out).all()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", [n for n in RESTORATION_NETS if n != "mirnet"])
def test_restoration_nets_leave_python(name):
    # a trained model leaves Python through torch.export or TorchScript
    torch.manual_seed(0)
    model = timm.create_model(name, in_chans=1, scale=2).eval()
    x = torch.rand(1, 1, 8, 6)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
