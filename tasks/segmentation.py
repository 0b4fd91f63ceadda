"""Semantic segmentation with any timm backbone that has a feature pyramid (`features_only`)."""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Patch
from PIL import Image
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from .base import BaseTask
from .heads import FPNDecoder, UPerNetDecoder, feature_pyramid
from .heads.skeleton import ClDiceLoss

if TYPE_CHECKING:
    from .predict import PredictionInputs

Decoder = Literal["fpn", "upernet"]


def class_colours(count: int) -> np.ndarray:
    """(count, 3) RGB floats in [0, 1]; class 0 (background) is never tinted, so class 1 takes
    tab10's first colour (blue) and the first classes avoid red, which vanishes on tissue."""
    return plt.get_cmap("tab10")((np.arange(count) - 1) % 10)[:, :3]


def tint(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, ignore_index: int) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] with each labelled pixel mixed with its class colour."""
    labelled = (mask != ignore_index) & (mask > 0)
    colour = colours[np.clip(mask, 0, len(colours) - 1)]
    return np.where(labelled[..., None], 0.45 * image + 0.55 * colour, image)


class SegmentationLoss(nn.Module):
    """Weighted sum of cross-entropy, soft Dice and (optionally) clDice; ignored pixels excluded.

    Soft Dice and clDice are written here: torchmetrics has metrics, not losses.

    Args:
        num_classes: Classes of the logits.
        ignore_index: Target value that counts in no term.
        ce_weight: Weight of the cross-entropy.
        dice_weight: Weight of 1 - mean soft Dice over the classes (batch-wise per class).
        cldice_weight: Weight of 1 - clDice over the non-background classes (1..K-1), the
            skeleton-based topology loss for thin structures (vessels, instrument jaws).
        class_weights: Per-class weights of the cross-entropy, or None.
        cldice_iterations: Skeletonization iterations of clDice.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, ce_weight: float = 1.0,
                 dice_weight: float = 1.0, cldice_weight: float = 0.0,
                 class_weights: Sequence[float] | None = None, cldice_iterations: int = 5):  # fmt: skip
        super().__init__()
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(
                f"task.class_weights has {len(class_weights)} values for {num_classes} classes"
            )
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.weights = {"ce": ce_weight, "dice": dice_weight, "cldice": cldice_weight}
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weight)
        self.cldice = ClDiceLoss(cldice_iterations) if cldice_weight > 0 else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns each term and their weighted sum under `loss`."""
        valid = (target != self.ignore_index).unsqueeze(1)
        terms = {
            "ce": F.cross_entropy(
                logits, target, weight=self.class_weights, ignore_index=self.ignore_index
            )
        }
        if self.weights["dice"] > 0 or self.cldice is not None:
            probs = logits.softmax(1) * valid
            onehot = F.one_hot(torch.where(valid[:, 0], target, 0), self.num_classes)
            onehot = onehot.permute(0, 3, 1, 2).to(probs.dtype) * valid
            if self.weights["dice"] > 0:
                dims = (0, 2, 3)
                overlap = 2 * (probs * onehot).sum(dims) + 1
                dice = overlap / (probs.sum(dims) + onehot.sum(dims) + 1)
                terms["dice"] = 1 - dice.mean()
            if self.cldice is not None:
                terms["cldice"] = self.cldice(probs[:, 1:], onehot[:, 1:])
        terms["loss"] = sum(self.weights[k] * v for k, v in terms.items())
        return terms


class SegmentationTask(BaseTask):
    """A decoder (FPN or UPerNet) over the backbone's feature pyramid, trained per pixel.

    Metrics (higher is better): mIoU, per-class IoU, mean Dice (= pixel F1, macro), pixel
    accuracy; pixels equal to `ignore_index` are left out. Test pictures: image, truth and
    prediction overlays.

    Args:
        num_classes: Classes, from the datamodule.
        class_names: Class names, from the datamodule.
        ignore_index: Mask value to ignore, from the datamodule.
        decoder: `fpn` (semantic FPN) or `upernet`.
        decoder_channels: Width of the decoder.
        min_reduction: Pyramid levels finer than this stride are not used.
        ce_weight: See `SegmentationLoss`.
        dice_weight: See `SegmentationLoss`.
        cldice_weight: See `SegmentationLoss`; > 0 switches the topology loss on.
        cldice_iterations: See `SegmentationLoss`.
        class_weights: See `SegmentationLoss`.
        plot_samples: Test images shown in the prediction figure.
        **kwargs: See `BaseTask`.
    """

    name = "segmentation"
    monitor: ClassVar[str] = "val/miou"
    mode: ClassVar[str] = "max"
    main_metric: ClassVar[str] = "test/miou"

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        decoder: Decoder = "fpn",
        decoder_channels: int = 64,
        min_reduction: int = 4,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        cldice_weight: float = 0.0,
        cldice_iterations: int = 5,
        class_weights: Sequence[float] | None = None,
        plot_samples: int = 6,
        **kwargs,
    ):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        hp = self.hparams
        self.backbone = feature_pyramid(self.create_backbone, hp.backbone, self.name,
                                        hp.min_reduction)  # fmt: skip
        match hp.decoder:
            case "fpn":
                make = FPNDecoder
            case "upernet":
                make = UPerNetDecoder
            case other:
                raise ValueError(f"task.decoder must be 'fpn' or 'upernet', got {other!r}")
        self.decoder = make(self.backbone.channels, self.num_classes, hp.decoder_channels)

    def configure_losses(self) -> None:
        hp = self.hparams
        self.criterion = SegmentationLoss(
            self.num_classes, hp.ignore_index, hp.ce_weight, hp.dice_weight, hp.cldice_weight,
            hp.class_weights, hp.cldice_iterations,
        )  # fmt: skip

    def configure_metrics(self) -> None:
        n = self.num_classes
        # input checks cost more than the update itself on every pixel of every batch
        args = {"ignore_index": self.hparams.ignore_index, "validate_args": False}
        metrics = MetricCollection({
            "miou": MulticlassJaccardIndex(n, average="macro", **args),
            "dice": MulticlassF1Score(n, average="macro", **args),
            "pixel_acc": MulticlassAccuracy(n, average="micro", **args),
        })  # fmt: skip
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_class_iou = MulticlassJaccardIndex(n, average="none", **args)
        self.test_class_iou = MulticlassJaccardIndex(n, average="none", **args)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_classes, H, W) logits."""
        return self.decoder(self.backbone(images), images.shape[-2:])

    def _shared_step(self, batch: dict, split: str, metrics: MetricCollection) -> tuple:
        images, masks = batch["image"], batch["mask"]
        logits = self(images)
        terms = self.criterion(logits, masks)
        loss = terms.pop("loss")
        predictions = logits.argmax(1)
        metrics.update(predictions, masks)
        n = len(images)
        self.log_loss(split, loss, n)
        self.log_dict({f"{split}/loss_{k}": v for k, v in terms.items()}, batch_size=n)
        self.log_metrics(metrics, split, n)
        return loss, predictions

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._shared_step(batch, "train", self.train_metrics)
        return self.check_finite(loss)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, predictions = self._shared_step(batch, "val", self.val_metrics)
        self.val_class_iou.update(predictions, batch["mask"])

    def on_validation_epoch_end(self) -> None:
        self._log_class_iou("val", self.val_class_iou)

    def on_test_epoch_start(self) -> None:
        self._shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, predictions = self._shared_step(batch, "test", self.test_metrics)
        self.test_class_iou.update(predictions, batch["mask"])
        datamodule = getattr(self.trainer, "datamodule", None)
        take = self.hparams.plot_samples - len(self._shown)
        if take > 0 and hasattr(datamodule, "denormalize"):
            images = datamodule.denormalize(batch["image"][:take])
            self._shown += zip(images, batch["mask"][:take].cpu().numpy(),
                               predictions[:take].cpu().numpy())  # fmt: skip

    def on_test_epoch_end(self) -> None:
        self._log_class_iou("test", self.test_class_iou)
        if self._shown:
            figure = overlay_figure(self._shown, self.class_names, self.hparams.ignore_index)
            self.log_figure("test/predictions", figure)

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`masks/<name>.png`: palette PNGs whose pixel values are class indices, at the input's
        size; `overlays/<name>.png`: the image tinted by class; `classes.csv`: index, name, colour.
        """
        transform = inputs.transform()
        colours = class_colours(self.num_classes)
        palette = (colours * 255).round().astype(np.uint8)
        for files in inputs.batches(1):
            path = files[0]
            image = inputs.read_image(path)
            height, width = image.shape[:2]
            # a mask of ones rides through the transform: where it lands is the image, the
            # rest is the transform's padding
            sample = transform(image=image, mask=np.ones((height, width), np.uint8))
            predicted = self(sample["image"][None].to(self.device)).argmax(1)[0].cpu().numpy()
            rows, cols = np.nonzero(np.asarray(sample["mask"]) == 1)
            inside = predicted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            mask = Image.fromarray(inside.astype(np.uint8))
            mask = mask.resize((width, height), Image.Resampling.NEAREST)
            mask.putpalette(palette.flatten().tolist())  # indices kept, shown in colour
            mask.save(inputs.output_path(out_dir / "masks", path))
            rgb = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
            overlay = tint(rgb / 255.0, np.asarray(mask), colours, self.hparams.ignore_index)
            Image.fromarray((overlay * 255).round().astype(np.uint8)).save(
                inputs.output_path(out_dir / "overlays", path)
            )
        legend = out_dir / "classes.csv"
        with legend.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "class", "r", "g", "b"])
            writer.writerows([i, n, *palette[i]] for i, n in enumerate(self.class_names))
        return [out_dir / "masks", out_dir / "overlays", legend]

    def export_outputs(self) -> dict[str, str]:
        return {"logits": "(B, num_classes, H, W) per-pixel class scores; argmax gives the mask"}

    def _log_class_iou(self, split: str, metric: MulticlassJaccardIndex) -> None:
        if metric.update_count == 0:
            return
        values = metric.compute()
        self.log_dict({f"{split}/iou_{name}": v for name, v in zip(self.class_names, values)})
        metric.reset()


def overlay_figure(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   class_names: Sequence[str], ignore_index: int) -> plt.Figure:  # fmt: skip
    """Rows of image | truth overlay | prediction overlay; class colours in the legend."""
    colours = class_colours(len(class_names))
    figure, axes = plt.subplots(len(samples), 3, figsize=(7.5, 2.5 * len(samples)), squeeze=False)
    for row, (image, truth, predicted) in zip(axes, samples):
        image = image.repeat(3, -1) if image.shape[-1] == 1 else image
        for ax, mask, title in zip(row, (None, truth, predicted), ("image", "truth", "prediction")):
            ax.imshow(image if mask is None else tint(image, mask, colours, ignore_index))
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    handles = [Patch(color=colours[i], label=n) for i, n in enumerate(class_names) if i > 0]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return figure
