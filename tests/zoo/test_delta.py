"""The Delta Activation Layer: bounded error, sparser with the threshold, straight-through."""

import pytest
import torch

from zoo.operators.delta import DeltaActivation


def slow_clip(b: int = 2, t: int = 6) -> torch.Tensor:
    torch.manual_seed(0)
    base = torch.randn(b, 1, 4, 5, 5)
    return (base + 0.05 * torch.randn(b, t, 4, 5, 5).cumsum(1)).reshape(b * t, 4, 5, 5)


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.2])
def test_output_stays_within_the_threshold_of_the_input(threshold):
    x = slow_clip()
    out = DeltaActivation(threshold)(x, frames=6)
    assert (out - x).abs().max() <= threshold + 1e-6


def test_sparsity_grows_with_the_threshold_and_zero_threshold_is_exact():
    x = slow_clip()
    layer = DeltaActivation(0.0)
    torch.testing.assert_close(layer(x, frames=6), x)
    sparsities = []
    for threshold in (0.0, 0.05, 0.2):
        layer = DeltaActivation(threshold)
        layer(x, frames=6)
        sparsities.append(layer.sparsity.item())
    assert sparsities[0] < sparsities[1] < sparsities[2]


def test_gradient_passes_straight_through_and_penalty_has_one():
    x = slow_clip().requires_grad_()
    layer = DeltaActivation(0.2)
    layer(x, frames=6).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    x.grad = None
    layer(x, frames=6)
    layer.penalty.backward()
    assert x.grad.abs().sum() > 0


def test_single_frames_pass_unchanged():
    x = torch.randn(3, 4, 5, 5)
    layer = DeltaActivation(0.5)
    assert layer(x, frames=1) is x and layer.sparsity is None
