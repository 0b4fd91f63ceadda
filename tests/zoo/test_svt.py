"""SVT: the paper's parameter counts, and what makes its mixer a wavelet scattering."""

import math

import pytest
import timm
import torch

from zoo.operators.scattering import DTCWT2d, ScatterMixer

# SVT-H rows of the paper's ImageNet-1K comparison (224x224, as repeated in the authors' SCT
# and SiMBA tables), in millions
PAPER_PARAMS_M = {"svt_h_s": 22.0, "svt_h_b": 32.8}
# the official configuration's exact counts (both classifiers), which our layers reproduce
OFFICIAL_PARAMS = {"svt_h_s": 22_052_592, "svt_h_b": 32_878_544}


@pytest.mark.parametrize("name", PAPER_PARAMS_M)
def test_parameter_count_matches_the_paper(name):
    count = sum(p.numel() for p in timm.create_model(name, device="meta").parameters())
    assert count == pytest.approx(PAPER_PARAMS_M[name] * 1e6, rel=0.01)
    assert count == OFFICIAL_PARAMS[name]


def _test_image() -> torch.Tensor:
    h, w = torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")
    return ((3 * h + 5 * w) % 7).reshape(1, 1, 6, 8).double()


def test_dtcwt_matches_the_reference_implementation():
    """Values from pytorch-wavelets 1.3.0, DTCWTForward(J=1, biort='near_sym_b'), same input."""
    low, real, imag = DTCWT2d(dtype=torch.float64)(_test_image())
    expected_low = [3.997712, 3.172602, 2.676659, 2.648171]
    expected_real = [-0.705778, 0.526013, -0.343744, 0.961024, 2.376898, 1.264770]
    expected_imag = [-0.241344, -1.390447, -0.227196, 0.210770, 1.553683, 0.361628]
    tol = dict(atol=2e-6, rtol=0)
    torch.testing.assert_close(low[0, 0, 2, :4], torch.tensor(expected_low).double(), **tol)
    torch.testing.assert_close(real[0, 0, :, 1, 2], torch.tensor(expected_real).double(), **tol)
    torch.testing.assert_close(imag[0, 0, :, 1, 2], torch.tensor(expected_imag).double(), **tol)


@pytest.mark.parametrize("size", [(2, 2), (6, 8), (16, 10)])
def test_dtcwt_is_perfectly_invertible(size):
    """The property SVT relies on: nothing is lost by splitting into low and high frequencies."""
    torch.manual_seed(0)
    transform = DTCWT2d(dtype=torch.float64)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    low, real, imag = transform(x)
    assert low.shape == x.shape and real.shape == (2, 3, 6, size[0] // 2, size[1] // 2)
    torch.testing.assert_close(transform.inverse(low, real, imag), x)


def test_dtcwt_bands_are_oriented():
    """Stripes that vary along the height excite the near-horizontal bands (15 and 165 degrees),
    stripes that vary along the width the near-vertical ones (75 and 105); a constant image
    excites none and passes through the low band unchanged."""
    transform = DTCWT2d(dtype=torch.float64)
    wave = torch.cos(torch.arange(32.0, dtype=torch.float64) * math.pi * 0.6)
    for image, bands in ((wave[:, None].expand(32, 32), [0, 5]), (wave.expand(32, 32), [2, 3])):
        _, real, imag = transform(image.reshape(1, 1, 32, 32))
        energy = (real**2 + imag**2)[0, 0, :, 4:-4, 4:-4].sum(dim=(1, 2))  # away from borders
        assert energy[bands].sum() > 0.99 * energy.sum()
    constant = torch.full((1, 1, 8, 8), 2.5, dtype=torch.float64)
    low, real, imag = transform(constant)
    torch.testing.assert_close(low, constant)
    assert real.abs().max() < 1e-12 and imag.abs().max() < 1e-12


def test_einstein_blending_is_a_complex_block_diagonal_linear_map():
    torch.manual_seed(0)
    mixer = ScatterMixer(8, num_blocks=2).double()
    real, imag = torch.randn(2, 2, 4, 6, 3, 3, dtype=torch.float64).unbind(0)
    out_real, out_imag = mixer._complex_linear(real.unsqueeze(0), imag.unsqueeze(0), layer=1)
    weight = torch.complex(mixer.high_weight[1, 0], mixer.high_weight[1, 1])  # (block, in, out)
    bias = torch.complex(mixer.high_bias[1, 0], mixer.high_bias[1, 1])  # (block, out)
    z = torch.complex(real, imag)  # (block, in, 6, h, w)
    expected = torch.einsum("ndxyz,ndk->nkxyz", z, weight) + bias[..., None, None, None]
    torch.testing.assert_close(torch.complex(out_real, out_imag)[0], expected)


def test_without_high_frequencies_the_mixer_is_a_low_pass_tensor_blend():
    """With the high-frequency MLP silenced, the output is the reconstruction of the weighted
    low band alone; the low-band weight follows the input size."""
    torch.manual_seed(0)
    mixer = ScatterMixer(4, size=(16, 16)).double()
    with torch.no_grad():
        mixer.high_weight.zero_()
        mixer.high_bias.zero_()
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    low, real, _ = mixer.transform(x)
    weight = mixer._low_weight_for(8, 8)
    zeros = torch.zeros_like(real)
    torch.testing.assert_close(mixer(x), mixer.transform.inverse(low * weight, zeros, zeros))
    assert weight.shape == (4, 8, 8)


def test_tiny_grayscale_forward_and_features():
    model = timm.create_model("svt_h_s", in_chans=1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    features = timm.create_model("svt_h_s", features_only=True, in_chans=1)
    shapes = [f.shape[1:] for f in features(torch.randn(1, 1, 64, 64))]
    assert shapes == [(64, 16, 16), (128, 8, 8), (320, 4, 4), (448, 2, 2)]
