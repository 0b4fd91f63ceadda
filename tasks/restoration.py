"""Image restoration: super-resolution and denoising, with any backbone or a restoration network.

The network is either a restoration network of the zoo's registry (ESPCN, CFSR, DnCNN, MIRNet,
the mixer body: `backbone=cfsr`), built with the task's `scale`, or any other backbone as the
encoder of `tasks.heads.restoration.PyramidRestorer`. Restoration networks are told apart by the
note `image_restoration` in their pretrained cfg (zoo/backbones/restoration_nets.py), before
anything is built.

Metrics are the literature's: PSNR and SSIM (Gaussian window 11, sigma 1.5) per image, averaged
over images, on outputs rounded to 8 bits as a saved image would be. Super-resolution measures
them on the luminance (ITU-R BT.601 Y, as MATLAB's rgb2ycbcr) with `scale` pixels cropped from
every border, plus PSNR over all channels; denoising over all channels, uncropped. The baselines
(bicubic upscaling; the noisy input and scikit-image's non-local means) go through the same
metric code and are logged beside the model: `test/psnr_y` and `test/psnr_y_bicubic`.
"""

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio
from torchmetrics.wrappers import LambdaInputTransformer

from zoo.backbones.restoration_nets import is_restoration_net
from zoo.restoration.pixels import bicubic_resize, quantize

from .base import BaseTask
from .heads import feature_pyramid
from .heads.restoration import PyramidRestorer

if TYPE_CHECKING:
    from .predict import PredictionInputs

Loss = Literal["l1", "mse", "charbonnier"]


def luminance(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma Y in [0, 1] (16-235 on 8 bits, MATLAB's rgb2ycbcr); grey stays grey."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16.0 + (images * weights).sum(1, keepdim=True)) / 255.0


def crop_border(images: torch.Tensor, border: int) -> torch.Tensor:
    return images[..., border:-border, border:-border] if border > 0 else images


def luminance_cropped(images: torch.Tensor, border: int) -> torch.Tensor:
    return crop_border(luminance(images), border)


def psnr() -> PeakSignalNoiseRatio:
    """PSNR of each image (data range 1), averaged over images."""
    return PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))


class ValidSSIM(Metric):
    """SSIM of Wang et al. per image (11x11 Gaussian window, sigma 1.5), averaged over images.

    Each image's SSIM is the mean of its SSIM map over the window positions that lie inside the
    image, as Wang's MATLAB code, scikit-image and the SR literature (BasicSR) compute it;
    torchmetrics 1.9 also averages the reflect-padded border, which reads higher. On images of
    11 pixels or fewer a side the border kept shrinks so that at least one position remains.
    Higher is better.
    """

    higher_is_better = True
    full_state_update = False
    radius = 5  # of the 11x11 window (torchmetrics' Gaussian of sigma 1.5)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        _, full = structural_similarity_index_measure(
            preds.double(), target.double(), sigma=1.5, data_range=1.0, return_full_image=True
        )
        h, w = full.shape[-2:]
        top, left = min(self.radius, (h - 1) // 2), min(self.radius, (w - 1) // 2)
        valid = full[..., top : h - top, left : w - left]
        self.total += valid.flatten(1).mean(1).sum()
        self.count += len(valid)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


def on(metric, transform) -> LambdaInputTransformer:
    return LambdaInputTransformer(metric, transform_pred=transform, transform_target=transform)


def super_resolution_metrics(scale: int) -> MetricCollection:
    """PSNR/SSIM on Y and PSNR on all channels, `scale` border pixels cropped."""
    y, all_channels = partial(luminance_cropped, border=scale), partial(crop_border, border=scale)
    return MetricCollection(
        {
            "psnr_y": on(psnr(), y),
            "ssim_y": on(ValidSSIM(), y),
            "psnr_rgb": on(psnr(), all_channels),
        },
        compute_groups=False,
    )


def denoising_metrics() -> MetricCollection:
    return MetricCollection({"psnr": psnr(), "ssim": ValidSSIM()}, compute_groups=False)


class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps^2), averaged: a smooth L1 (LapSRN, MIRNet)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((prediction - target).square() + self.eps**2).mean()


class RestorationTask(BaseTask):
    """Shared by super-resolution and denoising: network, pixels, loss, baselines and pictures.

    Args:
        mean: Normalisation mean of the input images, from the datamodule.
        std: Normalisation std, from the datamodule.
        loss: Pixel loss: `l1` (default of SR practice), `mse` or `charbonnier`.
        decoder_width: Width of `PyramidRestorer` (encoder backbones only).
        refine_blocks: Full-resolution residual blocks of `PyramidRestorer`.
        plot_samples: Test images shown side by side (degraded, restored, clean).
        **kwargs: See `BaseTask`.
    """

    mode: ClassVar[str] = "max"
    #: Names of the degraded input in figures, and of the restored output.
    degraded_name: ClassVar[str]
    restored_name: ClassVar[str]
    target_name: ClassVar[str]  # the column title of the ground truth in the pictures

    def __init__(
        self,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        loss: Loss = "l1",
        decoder_width: int = 64,
        refine_blocks: int = 2,
        plot_samples: int = 4,
        **kwargs,
    ):
        super().__init__(**kwargs)

    @property
    def scale(self) -> int:
        return 1

    def configure_models(self) -> None:
        channels = self.hparams.in_chans
        self.register_buffer(
            "pixel_mean", torch.tensor(self.hparams.mean).view(1, channels, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(self.hparams.std).view(1, channels, 1, 1), False
        )
        if is_restoration_net(self.hparams.backbone):
            self.net = self.create_backbone(scale=self.scale)
            return
        pyramid = feature_pyramid(self.create_backbone, self.hparams.backbone, self.name)
        self.net = PyramidRestorer(
            pyramid,
            in_chans=channels,
            scale=self.scale,
            mean=self.hparams.mean,
            std=self.hparams.std,
            width=self.hparams.decoder_width,
            refine_blocks=self.hparams.refine_blocks,
        )

    def configure_losses(self) -> None:
        match self.hparams.loss:
            case "l1":
                self.criterion = nn.L1Loss()
            case "mse":
                self.criterion = nn.MSELoss()
            case "charbonnier":
                self.criterion = CharbonnierLoss()
            case other:
                raise ValueError(f"task.loss must be 'l1', 'mse' or 'charbonnier', got {other!r}")

    def metrics(self) -> MetricCollection:
        raise NotImplementedError

    def configure_metrics(self) -> None:
        metrics = self.metrics()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.baselines = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {b: metrics.clone(prefix=f"{split}/", postfix=f"_{b}") for b in names}
                )
                for split, names in self.baseline_names().items()
            }
        )

    def baseline_names(self) -> dict[str, tuple[str, ...]]:
        """The baselines measured in each split (besides the model)."""
        raise NotImplementedError

    def baseline(self, name: str, degraded: torch.Tensor) -> torch.Tensor:
        """The output of baseline `name` for degraded pixels (B, C, h, w)."""
        raise NotImplementedError

    def to_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (as the datamodule yields them) -> pixels in [0, 1]."""
        return images * self.pixel_std + self.pixel_mean

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised degraded images (B, C, h, w) -> restored pixels (B, C, h*scale, w*scale)."""
        return self.net(self.to_pixels(images))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        restored = self(batch["image"])
        loss = self.criterion(restored, batch["target"])
        self.log("train/loss", loss, batch_size=len(restored), prog_bar=True)
        return self.check_finite(loss)

    def _evaluate(
        self, batch: dict, restored: torch.Tensor, split: str, metrics: MetricCollection
    ) -> dict:
        """Log loss and metrics of `restored` and of every baseline; return the 8-bit outputs."""
        target = batch["target"]
        n = len(target)
        self.log(f"{split}/loss", self.criterion(restored, target), batch_size=n, sync_dist=True)
        outputs = {self.restored_name: quantize(restored)}
        metrics.update(outputs[self.restored_name], target)
        self.log_metrics(metrics, split, n)
        degraded = self.to_pixels(batch["image"])
        for name, baseline_metrics in self.baselines[split].items():
            outputs[name] = quantize(self.baseline(name, degraded))
            baseline_metrics.update(outputs[name], target)
            self.log_dict(baseline_metrics, batch_size=n)
        return outputs

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self(batch["image"]), "val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self._shown: list[dict] = []

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # the network alone: the Throughput callback times this step (infer_images_per_s)
        return self(batch["image"])

    def on_test_batch_end(
        self, outputs: torch.Tensor, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        # metrics, baselines (non-local means takes seconds an image) and pictures: Lightning
        # calls this after the callbacks' batch-end hooks, so outside the Throughput clock
        restored = self._evaluate(batch, outputs, "test", self.test_metrics)[self.restored_name]
        degraded = self.to_pixels(batch["image"])
        for i in range(len(degraded)):
            if len(self._shown) >= self.hparams.plot_samples:
                return
            self._shown.append(
                {
                    "name": batch["name"][i],
                    self.degraded_name: self.degraded_view(degraded[i : i + 1]),
                    self.restored_name: restored[i : i + 1],
                    "clean": batch["target"][i : i + 1],
                }
            )

    def degraded_view(self, degraded: torch.Tensor) -> torch.Tensor:
        """The degraded input as shown beside the output (same size as the output)."""
        return quantize(degraded)

    def on_test_epoch_end(self) -> None:
        if self._shown:
            self.log_figure("test/restorations", self.comparison_figure(self._shown))

    def comparison_figure(self, samples: list[dict]) -> plt.Figure:
        """One row per image: degraded, restored and clean, titled with their PSNR."""
        columns = (self.degraded_name, self.restored_name, self.target_name)
        height, width = samples[0]["clean"].shape[-2:]
        row_height = 4 * height / width + 0.4  # three 4-inch-wide panels and a title
        figure, axes = plt.subplots(
            len(samples), 3, figsize=(12, row_height * len(samples)), squeeze=False
        )
        for row, sample in zip(axes, samples):
            clean = sample["clean"]
            for ax, column in zip(row, columns):
                image = sample["clean" if column == self.target_name else column]
                title = f"{sample['name']}: {column}" if column == columns[0] else column
                if column != self.target_name:
                    title += f"  {self.display_psnr(image, clean):.2f} dB"
                array = image[0].permute(1, 2, 0).float().cpu().numpy()
                ax.imshow(np.clip(array.squeeze(-1) if array.shape[-1] == 1 else array, 0, 1),
                          cmap="gray", vmin=0, vmax=1)  # fmt: skip
                ax.set_title(title, fontsize=9)
                ax.axis("off")
        figure.tight_layout()
        return figure

    def display_psnr(self, image: torch.Tensor, clean: torch.Tensor) -> float:
        """The headline PSNR of one image, for figure titles."""
        raise NotImplementedError

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`restored/<name>.png`: every input, whole, through the network (8-bit PNG)."""
        folder = out_dir / "restored"
        for files in inputs.batches(1):
            image = inputs.read_image(files[0])
            restored = quantize(self(inputs.normalize(image).to(self.device)))[0]
            pixels = (restored.permute(1, 2, 0).float().cpu().numpy() * 255).round()
            pixels = pixels.astype(np.uint8)
            Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(
                inputs.output_path(folder, files[0])
            )
        return [folder]

    def export_outputs(self) -> dict[str, str]:
        s = self.scale
        return {"restored": f"(B, C, {s}H, {s}W) pixels in [0, 1]; clip and x255 for 8 bits"}


class SuperResolutionTask(RestorationTask):
    """Single-image super-resolution by `scale`; metrics on Y with `crop_border = scale`.

    Args:
        scale: Upscaling factor, from the datamodule.
        **kwargs: See `RestorationTask`.
    """

    name = "super_resolution"
    monitor: ClassVar[str] = "val/psnr_y"
    main_metric: ClassVar[str] = "test/psnr_y"
    degraded_name: ClassVar[str] = "bicubic"
    restored_name: ClassVar[str] = "super-resolved"
    target_name: ClassVar[str] = "high-resolution"

    def __init__(self, scale: int = 3, **kwargs):
        self._scale = int(scale)
        super().__init__(**kwargs)

    @property
    def scale(self) -> int:
        return self._scale

    def metrics(self) -> MetricCollection:
        return super_resolution_metrics(self.scale)

    def baseline_names(self) -> dict[str, tuple[str, ...]]:
        return {"val": ("bicubic",), "test": ("bicubic",)}

    def baseline(self, name: str, degraded: torch.Tensor) -> torch.Tensor:
        return bicubic_resize(degraded, self.scale)

    def degraded_view(self, degraded: torch.Tensor) -> torch.Tensor:
        return quantize(bicubic_resize(degraded, self.scale))

    def display_psnr(self, image: torch.Tensor, clean: torch.Tensor) -> float:
        y = partial(luminance_cropped, border=self.scale)
        error = (y(image) - y(clean)).square().mean().clamp_min(1e-12)
        return float(-10 * torch.log10(error))


def non_local_means(noisy: torch.Tensor) -> torch.Tensor:
    """scikit-image's non-local means of each image, its sigma estimated from the image.

    The settings of scikit-image's own denoising example: 5x5 patches, search distance 6,
    h = 0.8 sigma, fast mode.
    """
    from skimage.restoration import denoise_nl_means, estimate_sigma

    denoised = []
    for image in noisy.detach().float().cpu().numpy():
        channels_last = np.moveaxis(image, 0, -1)
        axis = -1 if image.shape[0] > 1 else None
        if axis is None:
            channels_last = channels_last[..., 0]
        sigma = float(np.mean(estimate_sigma(channels_last, channel_axis=axis)))
        result = denoise_nl_means(
            channels_last, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
            patch_distance=6, channel_axis=axis,
        )  # fmt: skip
        denoised.append(result[..., None] if axis is None else result)
    stacked = np.stack(denoised).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stacked)).to(noisy)


class DenoisingTask(RestorationTask):
    """Image denoising; metrics over all channels against the clean image.

    The noisy input is a baseline in validation and test; non-local means (scikit-image, the
    classical denoiser) in test only, as it takes seconds per image.
    """

    name = "denoising"
    monitor: ClassVar[str] = "val/psnr"
    main_metric: ClassVar[str] = "test/psnr"
    degraded_name: ClassVar[str] = "noisy"
    restored_name: ClassVar[str] = "denoised"
    target_name: ClassVar[str] = "clean"

    def metrics(self) -> MetricCollection:
        return denoising_metrics()

    def baseline_names(self) -> dict[str, tuple[str, ...]]:
        return {"val": ("noisy",), "test": ("noisy", "nlm")}

    def baseline(self, name: str, degraded: torch.Tensor) -> torch.Tensor:
        return degraded if name == "noisy" else non_local_means(degraded)

    def display_psnr(self, image: torch.Tensor, clean: torch.Tensor) -> float:
        error = (image - clean).square().mean().clamp_min(1e-12)
        return float(-10 * torch.log10(error))
