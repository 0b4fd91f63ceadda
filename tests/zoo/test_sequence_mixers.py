"""The 1D sequence backbones' contract and each sequence operator's defining property.

timm's model suite (and tests/zoo/test_contract.py) assumes images; the 1D MetaFormers take
(B, C, L) sequences, so their contract lives here.
"""

import pytest
import timm
import torch

import zoo  # noqa: F401  (registers the models)
from zoo.backbones.metaformer_1d import is_sequence_model
from zoo.operators.seq_fftconv import direct_conv, fft_conv, monarch_fft, monarch_fft_conv
from zoo.operators.seq_longconv import LongConvKernel, LongConvMixer
from zoo.operators.seq_orchid import OrchidMixer
from zoo.operators.seq_registry import create_sequence_mixer, list_sequence_mixers
from zoo.operators.seq_sgconv import SGConvKernel, SGConvMixer
from zoo.operators.seq_tcnca import DilatedTCN, TCNCAMixer

MIXERS = list_sequence_mixers()
MODELS = sorted(n for n in timm.list_models() if is_sequence_model(n))


def test_every_mixer_has_a_model():
    assert MIXERS == ["flashfftconv", "longconv", "orchid", "sgconv", "tcnca"]
    assert {f"metaformer_1d_{m}" for m in MIXERS} <= set(MODELS)


# --- the contract of the 1D backbones ------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_builds_on_meta_device_and_rejects_unknown_kwargs(name):
    model = timm.create_model(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters()) and model.in_chans == 3
    with pytest.raises(TypeError):
        timm.create_model(name, device="meta", not_an_argument=1)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("length", [1, 7, 64])
def test_classifier_interface(mixer, length):
    torch.manual_seed(0)
    model = timm.create_model("test_metaformer_1d", mixer=mixer, in_chans=5, num_classes=4).eval()
    x = torch.randn(2, 5, length)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    assert features.shape[:2] == (2, model.num_features) and pre_logits.shape == (
        2,
        model.head_hidden_size,
    )
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("mixer", MIXERS)
def test_intermediates_features_and_checkpointing(mixer):
    torch.manual_seed(0)
    model = timm.create_model("test_metaformer_1d", mixer=mixer, in_chans=5).eval()
    x = torch.randn(2, 5, 40)
    with torch.no_grad():
        _, full = model.forward_intermediates(x, indices=[1])
        _, early = model.forward_intermediates(x, indices=[1], stop_early=True)
        torch.testing.assert_close(early[0], full[0])
        reference = model(x)
        model.set_grad_checkpointing(True)
        model.train()
        torch.testing.assert_close(model(x), reference)  # no dropout: train mode is the same map
    extractor = timm.create_model("test_metaformer_1d", mixer=mixer, in_chans=5, features_only=True)
    maps = extractor(x)
    assert [m.shape[1] for m in maps] == extractor.feature_info.channels()
    assert [40 // m.shape[-1] for m in maps] == extractor.feature_info.reduction()


def test_refuses_images():
    with pytest.raises(ValueError, match="1D sequence model.*task=volatility"):
        timm.create_model("metaformer_1d_orchid", representation="image")
    model = timm.create_model("test_metaformer_1d")
    with pytest.raises(ValueError, match=r"takes sequences \(B, C, L\)"):
        model(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("mixer", MIXERS)
def test_mixers_keep_shape_and_are_causal(mixer):
    torch.manual_seed(0)
    layer = create_sequence_mixer(mixer, 8).eval()
    x = torch.randn(2, 8, 48, requires_grad=True)
    y = layer(x)
    assert y.shape == x.shape
    # the output at t = 20 sees nothing after t = 20 (Orchid's conditioning network reads the
    # whole spectrum, so only its static path would be causal: it is not a causal operator)
    y[..., 20].sum().backward()
    future, past = x.grad[..., 21:].abs().max(), x.grad[..., :21].abs().max()
    if mixer == "orchid":
        assert future > 1e-3 * past
    else:  # FFT convolutions leave float round-off, no more
        assert future <= 1e-5 * past


# --- FlashFFTConv: the Monarch (matmul) FFT ----------------------------------------------------


@pytest.mark.parametrize("n", [8, 256, 4096])
def test_monarch_fft_equals_torch_fft(n):
    x = torch.randn(3, n, dtype=torch.complex64)
    expected = torch.fft.fft(x)
    error = (monarch_fft(x) - expected).abs().max() / expected.abs().max()
    assert error < 1e-4
    inverse = monarch_fft(expected, inverse=True) / n
    assert (inverse - x).abs().max() < 1e-4


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("length", "taps"), [(1000, 1000), (1024, 37), (4096, 4096)])
def test_monarch_fft_conv_equals_torch_fft_conv(causal, length, taps):
    torch.manual_seed(0)
    x, kernel = torch.randn(2, 4, length), torch.randn(4, taps)
    reference = fft_conv(x, kernel, causal)
    relative = (monarch_fft_conv(x, kernel, causal) - reference).norm() / reference.norm()
    assert relative < 1e-4
    if length <= 1024:  # the direct O(L K) convolution defines the convention
        direct = direct_conv(x, kernel, causal)
        assert ((direct - reference).norm() / direct.norm()) < 1e-4


def test_monarch_fft_conv_is_causal():
    x, kernel = torch.randn(1, 2, 512), torch.randn(2, 512)
    changed = x.clone()
    changed[..., 300:] += 10
    before = monarch_fft_conv(x, kernel, causal=True)[..., :300]
    after = monarch_fft_conv(changed, kernel, causal=True)[..., :300]
    # unchanged up to the float32 round-off of a transform over the (larger) changed signal
    assert (after - before).norm() / before.norm() < 1e-4


# --- long convolutions: squash and smooth -----------------------------------------------------


def test_long_conv_kernel_squash_zeroes_small_taps_and_smooth_averages():
    kernel = LongConvKernel(2, 32, squash=0.1, smooth=1)
    with torch.no_grad():
        kernel.weight.copy_(torch.linspace(-0.3, 0.3, 64).view(2, 32))
    k = kernel()
    small = kernel.weight.abs() <= 0.1
    assert (k[small] == 0).all()
    torch.testing.assert_close(
        k[~small], kernel.weight[~small] - 0.1 * kernel.weight[~small].sign()
    )
    kernel.smooth = 3
    smoothed = kernel()
    torch.testing.assert_close(smoothed[:, 5], k[:, 4:7].mean(1))


def test_long_conv_mixer_uses_the_regularised_kernel():
    layer = LongConvMixer(4, kernel_size=64, squash=10.0)  # every tap squashed to zero
    x = torch.randn(1, 4, 64)
    assert (layer.kernel() == 0).all()
    with torch.no_grad():
        expected = layer.proj_out(
            torch.nn.functional.gelu(layer.skip * x) * torch.sigmoid(layer.gate(x))
        )
        torch.testing.assert_close(layer(x), expected)


# --- SGConv: sub-linear parameters, decaying multi-scale kernel -------------------------------


def test_sgconv_parameters_grow_sublinearly_and_weights_decay():
    small, large = SGConvKernel(4, 16, max_length=256), SGConvKernel(4, 16, max_length=4096)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert large.lengths()[-1] * 2 >= 4096 / 2 and count(large) < 2 * count(small)
    assert count(large) < 4096 / 8 * 4  # far fewer than one weight per tap
    kernel = SGConvKernel(1, 16, num_scales=4, decay=0.5)
    with torch.no_grad():
        for w in kernel.sub_kernels:
            w.fill_(1.0)
    k = kernel(16 + 16 + 32 + 64)[0]
    # the sub-kernels' levels halve from scale to scale (1, 1/2, 1/4, 1/8 before normalising)
    levels = [k[0], k[20], k[40], k[100]]
    for a, b in zip(levels, levels[1:]):
        torch.testing.assert_close(b / a, torch.tensor(0.5))


def test_sgconv_mixer_any_length():
    layer = SGConvMixer(4, max_length=64)
    assert layer(torch.randn(2, 4, 300)).shape == (2, 4, 300)


# --- Orchid: data-dependent, shift-equivariant ----------------------------------------------


def test_orchid_kernel_depends_on_the_input_and_the_conv_is_shift_equivariant():
    torch.manual_seed(0)
    layer = OrchidMixer(4, max_length=32, pad=False).eval()
    x = torch.randn(1, 4, 32)
    v = layer.proj_in(x).chunk(2, 1)[0]
    other = layer.proj_in(torch.randn(1, 4, 32)).chunk(2, 1)[0]
    assert not torch.allclose(layer.kernel_spectrum(v, 32), layer.kernel_spectrum(other, 32))
    # a circular shift of the input shifts the output: the conditioning reads |FFT|, which the
    # shift leaves unchanged
    with torch.no_grad():
        shifted = layer(torch.roll(x, 5, -1))
        torch.testing.assert_close(shifted, torch.roll(layer(x), 5, -1), atol=1e-5, rtol=1e-4)


# --- TCNCA: dilated TCN receptive field, attention within chunks ------------------------------


def test_tcn_receptive_field_is_exponential_in_depth():
    tcn = DilatedTCN(2, levels=3, kernel_size=3)
    assert tcn.receptive_field() == 1 + 2 * 7
    x = torch.randn(1, 2, 64, requires_grad=True)
    tcn(x)[..., 40].sum().backward()
    reached = (x.grad.abs().sum((0, 1)) > 0).nonzero().flatten()
    assert reached.min() == 40 - 14 and reached.max() == 40


def test_tcnca_attention_stays_within_a_chunk():
    torch.manual_seed(0)
    layer = TCNCAMixer(4, chunk=16, levels=2, kernel_size=3)  # TCN reach 6
    x = torch.randn(1, 4, 64, requires_grad=True)
    layer(x)[..., 40].sum().backward()  # chunk 32..47
    assert x.grad[..., : 32 - 6].abs().max() == 0
    assert x.grad[..., 32:41].abs().sum() > 0
