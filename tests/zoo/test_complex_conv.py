"""Complex convolution: it is the complex-linear map of its complex kernel."""

import cmath

import torch
import torch.nn.functional as F

from zoo.operators.complex_conv import ComplexConv2d


def test_equals_a_convolution_with_the_complex_kernel():
    torch.manual_seed(0)
    conv = ComplexConv2d(3, 5, kernel_size=3, bias=False)
    z = torch.randn(2, 3, 9, 9, dtype=torch.complex64)
    kernel = torch.complex(conv.real.weight, conv.imag.weight)
    torch.testing.assert_close(conv(z), F.conv2d(z, kernel, padding=1), rtol=1e-4, atol=1e-5)


def test_phase_rotation_commutes():
    torch.manual_seed(0)
    conv = ComplexConv2d(4, 4, kernel_size=3, bias=False)
    z = torch.randn(1, 4, 6, 6, dtype=torch.complex64)
    rotation = cmath.exp(0.7j)
    torch.testing.assert_close(conv(rotation * z), rotation * conv(z), rtol=1e-4, atol=1e-5)
