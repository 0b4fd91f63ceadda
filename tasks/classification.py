"""Image classification with any timm backbone (the zoo's included)."""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from .base import BaseTask

if TYPE_CHECKING:
    from .predict import PredictionInputs


class ClassificationTask(BaseTask):
    """Cross-entropy classification; metrics: accuracy, top-k accuracy, macro F1 (higher is better).

    Args:
        num_classes: Classes, from the datamodule.
        class_names: Class names, from the datamodule, for figures.
        label_smoothing: Label smoothing of the cross-entropy.
        plot_samples: Test images shown in the prediction grid.
        **kwargs: See `BaseTask`.
    """

    name = "classification"
    monitor: ClassVar[str] = "val/acc"
    mode: ClassVar[str] = "max"
    main_metric: ClassVar[str] = "test/acc"

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        label_smoothing: float = 0.1,
        plot_samples: int = 32,
        **kwargs,
    ):
        self.num_classes = num_classes
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        self.model = self.create_backbone(num_classes=self.num_classes)

    def configure_losses(self) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.hparams.label_smoothing)

    def configure_metrics(self) -> None:
        n = self.num_classes
        metrics = {
            "acc": MulticlassAccuracy(n, average="micro"),
            "acc_macro": MulticlassAccuracy(n, average="macro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
        }
        if n > 5:
            metrics["acc_top5"] = MulticlassAccuracy(n, top_k=5, average="micro")
        # no compute groups: top-1 and top-5 states coincide on a perfect first batch, and a
        # merged group would then report top-5 equal to top-1 for the whole epoch
        metrics = MetricCollection(metrics, compute_groups=False)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.confusion = MulticlassConfusionMatrix(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _shared_step(self, batch: dict, split: str, metrics: MetricCollection) -> tuple:
        images, labels = batch["image"], batch["label"]
        logits = self(images)
        loss = self.criterion(logits, labels)
        metrics.update(logits, labels)
        n = len(labels)
        self.log_loss(split, loss, n)
        self.log_metrics(metrics, split, n)
        return loss, logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._shared_step(batch, "train", self.train_metrics)
        return self.check_finite(loss)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        # mistakes are what people look for: the grid shows them first, then fills with hits
        self._mistakes: list[tuple[np.ndarray, int, int]] = []
        self._hits: list[tuple[np.ndarray, int, int]] = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, logits = self._shared_step(batch, "test", self.test_metrics)
        predictions = logits.argmax(1)
        self.confusion.update(predictions, batch["label"])
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "denormalize"):
            return
        limit = self.hparams.plot_samples
        right = predictions == batch["label"]
        for keep, buffer in ((~right, self._mistakes), (right, self._hits)):
            take = keep.nonzero().flatten()[: limit - len(buffer)]
            if len(take):
                images = datamodule.denormalize(batch["image"][take])
                buffer += zip(images, batch["label"][take].tolist(), predictions[take].tolist())

    def on_test_epoch_end(self) -> None:
        names = list(self.hparams.class_names or range(self.num_classes))
        figure, _ = self.confusion.plot(labels=[str(n) for n in names])
        figure.set_size_inches(max(6, 0.5 * len(names)), max(6, 0.5 * len(names)))
        self.log_figure("test/confusion_matrix", figure)
        self.confusion.reset()
        shown = (self._mistakes + self._hits)[: self.hparams.plot_samples]
        if shown:
            self.log_figure("test/predictions", prediction_grid(shown, names))

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`predictions.csv`: a row per image with its most probable class and its probability."""
        transform = inputs.transform()
        names = list(self.hparams.class_names or range(self.num_classes))
        path = out_dir / "predictions.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "class", "probability"])
            for files in inputs.batches(32):
                images = torch.stack(
                    [transform(image=inputs.read_image(p))["image"] for p in files]
                )
                probability, index = self(images.to(self.device)).softmax(1).max(1)
                for file, i, q in zip(files, index.tolist(), probability.tolist()):
                    writer.writerow([inputs.name(file), names[i], f"{q:.4f}"])
        return [path]

    def export_module(self) -> nn.Module:
        return self.model

    def export_outputs(self) -> dict[str, str]:
        return {"logits": "(B, num_classes) class scores; softmax gives probabilities"}


def prediction_grid(samples: list[tuple[np.ndarray, int, int]], names: Sequence) -> plt.Figure:
    """Images titled 'true -> predicted', green when right and red when wrong."""
    columns = 8
    rows = -(-len(samples) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, truth, predicted) in zip(axes.flat, samples):
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
        ax.set_title(f"{names[truth]} -> {names[predicted]}", fontsize=7,
                     color="green" if truth == predicted else "red")  # fmt: skip
    figure.tight_layout()
    return figure
