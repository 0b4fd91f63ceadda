"""Volatility regression: the next interval's realised volatility from a window of order flow.

`Learning to Predict Short-Term Volatility with Order Flow Image Representation` (the seed paper)
reads an interval's order flow as an image and regresses the coming realised volatility with a
CNN, optionally with hand-crafted features appended to the pooled features, against the naive
guess, GARCH and an MLP, by RMSPE. Here any 2D timm backbone reads the order-flow image, or a 1D
sequence backbone of the zoo (`metaformer_1d_*`) reads the same window as a sequence.

The network regresses the log-variance, standardised by the training period's mean and std (from
the datamodule); predictions are exp(log-variance / 2). The baselines of tasks/baselines.py are
fitted in the same run and scored by the same metrics on the same test targets.
"""

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection, R2Score
from torchmetrics.regression import MeanSquaredError

from zoo.backbones.metaformer_1d import is_sequence_model

from .base import BaseTask
from .baselines import fit_baselines
from .distributed import gather_list

if TYPE_CHECKING:
    from .predict import PredictionInputs

Loss = Literal["mse_log_var", "qlike"]


# torchmetrics has neither RMSPE nor QLIKE: written here, as Metrics so that they sync over DDP
class RootMeanSquaredPercentageError(Metric):
    """sqrt(mean(((predicted - realised) / realised)^2)); lower is better (the paper's metric)."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, realised: torch.Tensor) -> None:
        self.total += (((predicted - realised) / realised).double() ** 2).sum()
        self.count += realised.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).sqrt().float()


class QLike(Metric):
    """QLIKE of volatility forecasts, on variances: mean(r - log r - 1), r = realised^2 /
    predicted^2 (Patton, J. Econometrics 2011: robust to noise in the realised proxy); lower is
    better, 0 is perfect."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, realised: torch.Tensor) -> None:
        log_ratio = 2 * (realised.double().log() - predicted.double().log())
        self.total += (log_ratio.exp() - log_ratio - 1).sum()
        self.count += realised.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


def volatility_metrics() -> MetricCollection:
    """RMSPE (main), RMSE, QLIKE (lower is better) and R^2 (higher is better), on volatilities."""
    return MetricCollection(
        {
            "rmspe": RootMeanSquaredPercentageError(),
            "rmse": MeanSquaredError(squared=False),
            "qlike": QLike(),
            "r2": R2Score(),
        }
    )


class VolatilityNetwork(nn.Module):
    """Order flow (and hand-crafted features) -> volatility, the standardisation undone inside."""

    def __init__(self, task: "VolatilityTask"):
        super().__init__()
        self.task = task

    def forward(self, image: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.task.to_volatility(self.task(image, features))


class VolatilityTask(BaseTask):
    """Realised-volatility regression; metrics RMSPE (main), RMSE, QLIKE (lower is better), R^2.

    Args:
        num_features: Hand-crafted features per sample, from the datamodule.
        target_mean: Mean log-variance of the training targets, from the datamodule.
        target_std: Its standard deviation.
        representation: `image` or `sequence`, from the datamodule.
        channel_names: Names of the input channels, from the datamodule, for figures.
        loss: `mse_log_var` (MSE of the standardised log-variance) or `qlike`.
        use_features: Append the hand-crafted features to the pooled features (the paper's
            "with features").
        head_hidden: Width of the regression head's hidden layer.
        seed: Seed of the MLP baseline.
        plot_samples: Order-flow inputs drawn in the figure of inputs.
        **kwargs: See `BaseTask`.
    """

    name = "volatility"
    predict_input = "series"
    monitor: ClassVar[str] = "val/rmspe"
    mode: ClassVar[str] = "min"
    main_metric: ClassVar[str] = "test/rmspe"

    def __init__(
        self,
        num_features: int = 0,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        representation: Literal["image", "sequence"] = "image",
        channel_names: list[str] | None = None,
        loss: Loss = "mse_log_var",
        use_features: bool = True,
        head_hidden: int = 64,
        seed: int = 0,
        plot_samples: int = 3,
        **kwargs,
    ):
        self.num_features = num_features if use_features else 0
        super().__init__(**kwargs)
        self._baselines: dict[str, dict[str, float]] = {}

    def configure_models(self) -> None:
        name = self.hparams.backbone
        is_sequence = is_sequence_model(name)
        if is_sequence != (self.hparams.representation == "sequence"):
            kind = "a 1D sequence model" if is_sequence else "a 2D image backbone"
            wanted = "sequence" if is_sequence else "image"
            raise ValueError(
                f"backbone {name!r} is {kind} but data.representation="
                f"{self.hparams.representation!r}: set data.representation={wanted}"
            )
        self.backbone = self.create_backbone(num_classes=0)
        if getattr(self.backbone, "restoration_net", False):
            raise ValueError(
                f"backbone {name!r} is an image restoration network (image -> image), not a "
                "classifier or feature extractor: task=volatility needs pooled features. Use it "
                "with task=super_resolution or task=denoising."
            )
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = nn.Sequential(
            nn.Linear(width + self.num_features, self.hparams.head_hidden),
            nn.GELU(),
            nn.Linear(self.hparams.head_hidden, 1),
        )

    def configure_metrics(self) -> None:
        metrics = volatility_metrics()
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, image: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised log-variance (B,). `features` default to zeros (their training mean)."""
        pooled = self.backbone.forward_head(self.backbone.forward_features(image), pre_logits=True)
        if self.num_features:
            if features is None:
                features = pooled.new_zeros(len(pooled), self.num_features)
            pooled = torch.cat([pooled, features.to(pooled.dtype)], 1)
        return self.head(pooled).squeeze(1)

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`<name>-volatility.csv` per price series: for every interval with a full window behind
        it, its start time, the predicted realised volatility of the next interval and, where the
        file has it, that interval's realised volatility."""
        written = []
        for files in inputs.batches(1):
            series = inputs.read_series(files[0])
            predicted = torch.cat([
                self.to_volatility(self(image.to(self.device), features.to(self.device))).cpu()
                for image, features in zip(series["image"].split(256), series["features"].split(256))
            ])  # fmt: skip
            path = inputs.output_path(out_dir, files[0], "-volatility.csv")
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(
                    ["interval_start", "predicted_next_volatility", "realised_next_volatility"]
                )
                for start, p, r in zip(
                    series["start"], predicted.tolist(), series["realised_next"]
                ):
                    writer.writerow([start, f"{p:.6g}", "" if np.isnan(r) else f"{r:.6g}"])
            written.append(path)
        return written

    def export_module(self) -> nn.Module:
        return VolatilityNetwork(self)

    def export_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        return (batch["image"], batch["features"]) if self.num_features else (batch["image"],)

    def export_outputs(self) -> dict[str, str]:
        return {"volatility": "(B,) predicted realised volatility of the next interval"}

    def to_volatility(self, standardised_log_var: torch.Tensor) -> torch.Tensor:
        log_var = self.hparams.target_mean + self.hparams.target_std * standardised_log_var
        return (0.5 * log_var).exp()

    def loss(self, output: torch.Tensor, realised: torch.Tensor) -> torch.Tensor:
        target = (2 * realised.log() - self.hparams.target_mean) / self.hparams.target_std
        match self.hparams.loss:
            case "mse_log_var":
                return nn.functional.mse_loss(output, target)
            case "qlike":
                # QLIKE in log-variance: exp(y - y_hat) - (y - y_hat) - 1, scaled to log units
                gap = (target - output) * self.hparams.target_std
                return (gap.exp() - gap - 1).mean()
            case other:
                raise ValueError(f"task.loss must be 'mse_log_var' or 'qlike', got {other!r}")

    def _shared_step(self, batch: dict, split: str, metrics: MetricCollection) -> tuple:
        output = self(batch["image"], batch.get("features"))
        loss = self.loss(output, batch["target"])
        # metrics, baselines and figures in float32, whatever precision the step ran in
        predicted = self.to_volatility(output.detach().float())
        metrics.update(predicted, batch["target"])
        n = len(output)
        self.log_loss(split, loss, n)
        self.log_metrics(metrics, split, n)
        return loss, predicted

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._shared_step(batch, "train", self.train_metrics)
        return self.check_finite(loss)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self._test_outputs: list[tuple[torch.Tensor, ...]] = []
        self._shown: list[torch.Tensor] = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, predicted = self._shared_step(batch, "test", self.test_metrics)
        self._test_outputs.append((batch["index"].cpu(), predicted.cpu(), batch["target"].cpu()))
        if len(self._shown) < self.hparams.plot_samples:
            self._shown += list(
                batch["image"][: self.hparams.plot_samples - len(self._shown)].cpu()
            )

    def on_test_epoch_end(self) -> None:
        outputs = gather_list(self._test_outputs)
        index, predicted, realised = (torch.cat(x).numpy() for x in zip(*outputs))
        order = np.argsort(index)
        index, predicted, realised = index[order], predicted[order], realised[order]
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "baseline_inputs"):
            return
        inputs = datamodule.baseline_inputs()
        forecasts = fit_baselines(inputs, "test", self.hparams.seed)
        # the same targets as the network's: the test samples this epoch saw (all, except in
        # a debug run that tests one batch)
        where = np.searchsorted(inputs["test_samples"], index)
        forecasts = {name: values[where] for name, values in forecasts.items()}
        target = torch.from_numpy(realised)
        for name, values in forecasts.items():
            metrics = volatility_metrics()
            metrics.update(torch.from_numpy(values).float(), target)
            scores = {k: float(v) for k, v in metrics.compute().items()}
            self._baselines[name] = scores
            for key, value in scores.items():
                self.log(f"test/{name}/{key}", value)
        if self.trainer.fast_dev_run:
            return  # a one-batch debug run (the test grid) checks the numbers, draws nothing
        self.log_figure("test/volatility_over_time", plot_over_time(
            datamodule.interval_start[index + 1], realised, predicted, forecasts))  # fmt: skip
        self.log_figure("test/predicted_vs_realised", plot_scatter(realised, predicted, forecasts))
        if self._shown:
            names = datamodule.input_names
            self.log_figure(
                "test/order_flow", plot_inputs(self._shown, names, realised[: len(self._shown)])
            )

    def extra_results(self) -> dict[str, Any]:
        return {"baselines": self._baselines} if self._baselines else {}


BASELINE_STYLE = {
    "naive": "tab:gray",
    "har": "tab:green",
    "garch": "tab:orange",
    "mlp": "tab:purple",
}


def plot_over_time(
    start: np.ndarray, realised: np.ndarray, predicted: np.ndarray, baselines: dict[str, np.ndarray]
) -> plt.Figure:
    """Realised and predicted volatility over the test period, with the baselines."""
    figure, ax = plt.subplots(figsize=(12, 4))
    x = np.arange(len(realised))
    ax.plot(x, realised, color="black", lw=1.4, label="realised")
    for name, values in baselines.items():
        ax.plot(x, values, color=BASELINE_STYLE.get(name), lw=0.8, alpha=0.8, label=name)
    ax.plot(x, predicted, color="tab:blue", lw=1.4, label="network")
    ax.set_yscale("log")
    ax.set_xlabel("test interval (chronological)")
    ax.set_ylabel("volatility of the next interval")
    ax.legend(ncol=6, fontsize=8)
    ax.set_title("Realised vs predicted volatility over the test period")
    figure.tight_layout()
    return figure


def plot_scatter(
    realised: np.ndarray, predicted: np.ndarray, baselines: dict[str, np.ndarray]
) -> plt.Figure:
    """Predicted vs realised volatility (log-log), the network beside each baseline."""
    panels = {"network": predicted, **baselines}
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    lo, hi = realised.min(), realised.max()
    for ax, (name, values) in zip(axes[0], panels.items()):
        rmspe = np.sqrt(np.mean(((values - realised) / realised) ** 2))
        ax.scatter(realised, values, s=4, alpha=0.5, color=BASELINE_STYLE.get(name, "tab:blue"))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name}: RMSPE {rmspe:.3f}", fontsize=9)
        ax.set_xlabel("realised")
    axes[0, 0].set_ylabel("predicted")
    figure.tight_layout()
    return figure


def plot_inputs(inputs: list[torch.Tensor], names: list[str], realised: np.ndarray) -> plt.Figure:
    """Each input's channels side by side: rows are time, columns price buckets (or features
    for sequences, drawn features x time)."""
    channels = inputs[0].shape[0] if inputs[0].ndim == 3 else 1
    figure, axes = plt.subplots(
        len(inputs), channels, figsize=(2.2 * channels, 2.4 * len(inputs)), squeeze=False
    )
    for row, (x, target) in enumerate(zip(inputs, realised)):
        planes = list(x.float().numpy()) if x.ndim == 3 else [x.float().numpy()]
        for col, plane in enumerate(planes):
            ax = axes[row, col]
            ax.imshow(plane, aspect="auto", cmap="magma", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(names[col] if x.ndim == 3 else "features x time", fontsize=8)
        axes[row, 0].set_ylabel(f"next RV {target:.2e}", fontsize=7)
    figure.tight_layout()
    return figure
