"""The restoration tasks: metrics against scikit-image, both network paths, runs end to end."""

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import train
from tasks.restoration import (
    DenoisingTask,
    SuperResolutionTask,
    denoising_metrics,
    luminance,
    super_resolution_metrics,
)
from zoo.backbones.restoration_nets import is_restoration_net

# tiny versions of the embedded data sets, for end-to-end runs in seconds
FEW_CROPS = ["data.samples_per_epoch=4", "data.batch_size=2"]
TINY_SR = [*FEW_CROPS, "data.patch_size=12", "data.eval_size=16"]
TINY_DENOISE = [*FEW_CROPS, "data.patch_size=16", "data.eval_size=24"]


def pair(seed: int, channels: int = 3, size: tuple[int, int] = (40, 46)):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(1, channels, *size, generator=generator)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return noisy, clean


def test_luminance_is_matlab_rgb2ycbcr():
    rgb = torch.rand(1, 3, 8, 9)
    ours = luminance(rgb)[0, 0].numpy()
    reference = rgb2ycbcr(rgb[0].permute(1, 2, 0).numpy())[..., 0] / 255
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_super_resolution_metrics_agree_with_scikit_image():
    scale = 3
    metrics = super_resolution_metrics(scale)
    expected = {"psnr_y": [], "ssim_y": [], "psnr_rgb": []}
    for seed in range(3):
        pred, target = pair(seed)
        metrics.update(pred, target)
        y_pred = luminance(pred)[0, 0, scale:-scale, scale:-scale].double().numpy()
        y_true = luminance(target)[0, 0, scale:-scale, scale:-scale].double().numpy()
        expected["psnr_y"].append(peak_signal_noise_ratio(y_true, y_pred, data_range=1))
        expected["ssim_y"].append(
            structural_similarity(
                y_true, y_pred, data_range=1, gaussian_weights=True, use_sample_covariance=False
            )
        )
        rgb_pred = pred[0, :, scale:-scale, scale:-scale].permute(1, 2, 0).double().numpy()
        rgb_true = target[0, :, scale:-scale, scale:-scale].permute(1, 2, 0).double().numpy()
        expected["psnr_rgb"].append(peak_signal_noise_ratio(rgb_true, rgb_pred, data_range=1))
    computed = metrics.compute()
    for name, values in expected.items():
        # per-image values averaged over images, as the literature reports them
        assert computed[name].item() == pytest.approx(np.mean(values), abs=1e-4), name


def test_denoising_metrics_agree_with_scikit_image_on_colour():
    metrics = denoising_metrics()
    pred, target = pair(7)
    metrics.update(pred, target)
    a = pred[0].permute(1, 2, 0).double().numpy()
    b = target[0].permute(1, 2, 0).double().numpy()
    computed = metrics.compute()
    assert computed["psnr"].item() == pytest.approx(
        peak_signal_noise_ratio(b, a, data_range=1), abs=1e-4
    )
    ssim = structural_similarity(b, a, data_range=1, gaussian_weights=True,
                                 use_sample_covariance=False, channel_axis=-1)  # fmt: skip
    assert computed["ssim"].item() == pytest.approx(ssim, abs=1e-4)


def test_restoration_nets_are_told_from_encoders_by_name():
    assert is_restoration_net("cfsr") and is_restoration_net("dncnn")
    assert not is_restoration_net("resnet18") and not is_restoration_net("hornet_tiny_7x7")


@pytest.mark.parametrize("backbone", ["espcn", "resnet18"])
def test_super_resolution_task_upscales_with_either_path(backbone):
    task = SuperResolutionTask(backbone=backbone, in_chans=3, scale=2, mean=(0.5,) * 3, std=(0.25,) * 3,
                               decoder_width=8, refine_blocks=1)  # fmt: skip
    out = task(torch.randn(2, 3, 9, 11))
    assert out.shape == (2, 3, 18, 22)


def test_encoder_path_starts_as_the_baseline():
    """The residual head is zero at first: the untrained network is bicubic upscaling."""
    task = SuperResolutionTask(backbone="resnet18", in_chans=1, scale=3, mean=(0.0,), std=(1.0,),
                               decoder_width=8, refine_blocks=1)  # fmt: skip
    task.eval()  # resnet18 maps this input to 1x1 at stride 32: no batch statistics
    lr = torch.rand(1, 1, 10, 7)
    with torch.no_grad():
        torch.testing.assert_close(task(lr), task.baseline("bicubic", lr))
    denoiser = DenoisingTask(backbone="resnet18", in_chans=1, mean=(0.0,), std=(1.0,),
                             decoder_width=8, refine_blocks=1)  # fmt: skip
    denoiser.eval()
    with torch.no_grad():
        torch.testing.assert_close(denoiser(lr), lr)


def test_non_local_means_beats_the_noisy_input():
    noisy, clean = pair(0, channels=1, size=(48, 48))
    smooth = torch.nn.functional.avg_pool2d(clean, 5, 1, 2)  # NLM needs structure, not noise
    noisy = (smooth + 0.1 * torch.randn_like(smooth)).clamp(0, 1)
    task = DenoisingTask(backbone="dncnn", in_chans=1, mean=(0.0,), std=(1.0,))
    denoised = task.baseline("nlm", noisy)
    assert denoised.shape == noisy.shape
    assert (denoised - smooth).square().mean() < 0.5 * (noisy - smooth).square().mean()


def run_tiny(make_cfg, *overrides):
    results = train.run(make_cfg(*overrides, "debug=fdr"))
    assert all(math.isfinite(v) for v in results["metrics"].values())
    return results["metrics"]


def test_super_resolution_runs_end_to_end_with_its_baseline(make_cfg, tmp_path):
    metrics = run_tiny(make_cfg, "task=super_resolution", "backbone=espcn", *TINY_SR)
    assert {"test/psnr_y", "test/ssim_y", "test/psnr_rgb", "test/psnr_y_bicubic"} <= set(metrics)
    assert (tmp_path / "figures" / "test_restorations.png").is_file()


def test_denoising_runs_end_to_end_with_its_baselines(make_cfg):
    metrics = run_tiny(make_cfg, "task=denoising", "backbone=dncnn", "data.sigma=50", *TINY_DENOISE)
    assert {"test/psnr", "test/ssim", "test/psnr_noisy", "test/psnr_nlm", "test/ssim_nlm"} <= set(
        metrics
    )
    assert metrics["test/psnr_noisy"] < 16  # sigma 50: about 14 dB


def test_grey_scale_super_resolution_with_an_encoder(make_cfg):
    run_tiny(make_cfg, "task=super_resolution", "backbone=timm", "backbone.name=resnet18",
             "data.in_chans=1", "data.scale=2", *TINY_SR)  # fmt: skip
