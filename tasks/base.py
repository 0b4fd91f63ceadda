"""What every task shares: backbone creation, optimiser and schedule, the NaN guard, figures."""

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import lightning as L
import matplotlib
import timm
import torch
from hydra.utils import instantiate
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MetricCollection

import zoo  # noqa: F401  (registers the zoo's backbones in timm)

if TYPE_CHECKING:
    from .predict import PredictionInputs

matplotlib.use("Agg")  # figures are written to files and loggers, never shown
import matplotlib.pyplot as plt  # noqa: E402


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05
) -> LambdaLR:
    """Linear warm-up over `warmup_fraction` of the steps, then cosine decay to zero."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def compile_in_place(model: nn.Module, backend: str) -> None:
    """`torch.compile` the entry point tasks call: `forward_features` where the model has one
    (re-ID and volatility call it directly, and `forward` runs through it), `forward` otherwise
    (feature pyramids, restoration networks).

    The module stays itself, so checkpoints keep their keys (`torch.compile(model)` would prefix
    them with `_orig_mod.`) and load into an uncompiled task.
    """
    name = "forward_features" if hasattr(model, "forward_features") else "forward"
    setattr(model, name, torch.compile(getattr(model, name), backend=backend))


def _build(config: dict[str, Any], **objects: Any) -> Any:
    """Hydra's `instantiate` of `config`, called with live `objects` (parameters, an optimiser).

    The objects go to the partial, not to `instantiate`, which would merge them into a config.
    """
    return instantiate(config, _partial_=True)(**objects)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class BaseTask(L.LightningModule):
    """Backbone + head + loss + metrics, configured from `self.hparams`.

    Args:
        backbone: A timm model name (any registered model, the zoo's included).
        backbone_kwargs: Extra keyword arguments for `timm.create_model`.
        in_chans: Input channels, from the datamodule.
        optimizer: The optimiser's config (`_target_` and its arguments, a plain dict); built
            with the param groups in `configure_optimizers`. None: AdamW.
        scheduler: The scheduler's config, built with `optimizer` and `total_steps`, or None.
        channels_last: Keep 4D weights in channels-last (NHWC) memory; convolutions then run
            in that layout, which oneDNN and cuDNN prefer.
        compile: `torch.compile` the backbone (see `compile_in_place`): true for torch's default
            backend (inductor), or a backend's name (`aot_eager` captures and traces the graphs
            without generating code: a quick check that a network compiles).

    Configs, not objects, so that the hyper-parameters a checkpoint stores are plain data that
    torch's weights-only unpickler loads (tasks/checkpoints.py).
    """

    #: The log key that selects the best checkpoint, and whether higher is better.
    monitor: ClassVar[str] = "val/loss"
    mode: ClassVar[str] = "min"
    #: The headline test metric of results.json and of a sweep's summary table.
    main_metric: ClassVar[str] = "test/loss"
    #: The task's name, matched against a datamodule's `task`.
    name: ClassVar[str]
    #: What mode=predict reads: `image` files, `video` files or price `series` (CSV).
    predict_input: ClassVar[Literal["image", "video", "series"]] = "image"

    def __init__(
        self,
        backbone: str,
        backbone_kwargs: dict | None = None,
        in_chans: int = 3,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool | str = False,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.configure_models()
        if channels_last:
            # a convolution's output follows its weight's layout, so the whole network runs in it
            self.to(memory_format=torch.channels_last)
        self.configure_losses()
        self.configure_metrics()

    def create_backbone(self, **kwargs) -> nn.Module:
        """`timm.create_model` with the configured backbone; `kwargs` are the task's needs."""
        model = timm.create_model(
            self.hparams.backbone,
            pretrained=False,
            in_chans=self.hparams.in_chans,
            **{**(self.hparams.backbone_kwargs or {}), **kwargs},
        )
        if compile := self.hparams.get("compile"):
            compile_in_place(model, compile if isinstance(compile, str) else "inductor")
        return model

    def configure_models(self) -> None:
        raise NotImplementedError

    def configure_losses(self) -> None:
        pass

    def configure_metrics(self) -> None:
        pass

    def configure_optimizers(self) -> dict:
        optimizer_config = self.hparams.optimizer or {"_target_": "torch.optim.AdamW"}
        weight_decay = optimizer_config.get("weight_decay", 0.0)
        # no decay on norms, biases and layer scales: the timm convention
        optimizer = _build(optimizer_config, params=param_groups_weight_decay(self, weight_decay))
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = _build(
            self.hparams.scheduler,
            optimizer=optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def extra_results(self) -> dict[str, Any]:
        """Task-specific entries for results.json (baselines, calibration...); none by default."""
        return {}

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """mode=predict: run on `inputs` (see tasks/predict.py), write files a person can use
        into `out_dir` and return their paths."""
        raise NotImplementedError(f"task={self.name} has no mode=predict")

    def export_module(self) -> nn.Module:
        """mode=export: the network to export, tensors in and tensors out."""
        return self

    def export_inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """The exported network's inputs, taken from a test batch."""
        return (batch["image"],)

    def export_outputs(self) -> dict[str, str]:
        """Each output of `export_module`, in order: its name and what it means."""
        raise NotImplementedError(f"task={self.name} has no mode=export")

    def log_loss(self, split: str, loss: torch.Tensor, batch_size: int) -> None:
        """Log `<split>/loss`; outside training averaged over DDP processes (in training a
        per-step collective would cost more than the progress bar's number is worth)."""
        self.log(f"{split}/loss", loss, batch_size=batch_size, prog_bar=split != "test",
                 sync_dist=split != "train")  # fmt: skip

    def log_metrics(self, metrics: MetricCollection, split: str, batch_size: int) -> None:
        """Log a split's metrics once per epoch, training's too: logged each step, Lightning
        read every metric's state each call, ~3% of a classification step on CPU (issue 15)."""
        self.log_dict(metrics, batch_size=batch_size, on_step=False, on_epoch=True,
                      prog_bar=split == "val")  # fmt: skip

    def check_finite(self, loss: torch.Tensor) -> torch.Tensor:
        """Stop on a NaN/inf loss before it reaches the weights, saying what to try."""
        if not torch.isfinite(loss):
            lr = (
                self.trainer.optimizers[0].param_groups[0]["lr"]
                if self.trainer.optimizers
                else None
            )
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step} (lr={lr}). Lower task.optimizer.lr, set "
                "trainer.gradient_clip_val, or check the data for NaN values."
            )
        return loss

    def log_figure(self, key: str, figure: plt.Figure) -> None:
        """Write `figure` as `<run dir>/figures/<key>.png` and send it to the logger.

        Under DDP only the first process writes: one set of figures per run.
        """
        if not self.trainer.is_global_zero:
            plt.close(figure)
            return
        safe_key = key.replace("/", "_")
        folder = Path(self.trainer.default_root_dir) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"{safe_key}.png", dpi=110, bbox_inches="tight")
        for logger in self.loggers:
            experiment = logger.experiment
            if hasattr(experiment, "add_figure"):  # TensorBoard
                experiment.add_figure(key, figure, global_step=self.global_step)
            elif type(logger).__name__ == "WandbLogger":
                import wandb

                experiment.log({key: wandb.Image(figure)})
        plt.close(figure)
