"""Surgical phase recognition (and tool presence) from video clips, with any 2D backbone.

A clip (B, T, C, H, W) runs through the backbone frame by frame (T folded into the batch); the
backbone's own classifier, sized `feature_dim`, gives one feature vector per frame; a temporal
model (`task.temporal=none|tcn|lstm`, `task.causal=true` for online use) runs over the T frames;
a linear layer gives each frame's phase. A backbone that folds time into channels (SqueezeTime,
arXiv 2405.08344; its pretrained cfg says so) takes the clip as one (B, C * T, H, W) input and
its classifier emits the T frames' features at once.

Options from the papers of issue 14:

- `task.tools=true`, EndoNet's multi-task form (Twinanda et al., arXiv 1602.03012): a tool
  presence head (multi-label, binary cross-entropy) on each frame's features, and the phase
  model sees the tool probabilities beside the features.
- `task.freeze_backbone=true`, the frozen-spatial-backbone recipe of "Optimizing ViViT Training"
  (Russo et al., arXiv 2306.04822): the backbone's trunk is frozen (run without gradient, its
  norms in eval mode), and only its classifier projection, a bottleneck adapter, the temporal
  model and the heads train. `task.backbone_checkpoint` starts the backbone from an earlier
  run (a frame-only run, say), as no pretrained weights can be fetched offline.
- `task.delta_activation=<threshold>`: Delta Activation Layers (Yousefzadeh and Sifalakis,
  arXiv 2107.07305) on the backbone's stage outputs (`task.delta_stages`, default all), with
  the L1 delta penalty weighted by `task.delta_weight`; `*/delta_sparsity` is the fraction of
  zero temporal deltas.
- `task.ctl_stage=<i>`: SqueezeTime's Channel-Time Learning block across the frames after
  stage i of a convolutional (NCHW) backbone.

Metrics (higher is better): frame accuracy `test/acc` (main), macro precision, recall, F1 and
Jaccard and their per-phase values, tool mAP `test/tool_map` with tools on. Pictures: a phase
timeline per test video (truth above prediction) and the per-phase confusion matrix.

    python -m tasks.surgical_video CHECKPOINT VIDEO [--out DIR]   # per-frame CSV + timeline
"""

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import timm
import torch
import torch.nn.functional as F
from matplotlib.patches import Patch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.functional.classification import multilabel_average_precision

from zoo.backbones.restoration_nets import is_restoration_net
from zoo.backbones.squeezetime import folds_time_into_channels
from zoo.operators.ctl import FramesCTL
from zoo.operators.delta import DeltaActivation

from .base import BaseTask
from .checkpoints import load_checkpoint
from .distributed import gather_list
from .heads import IncompatibleBackboneError
from .heads.temporal import FeatureAdapter, TemporalModel, build_temporal_model

if TYPE_CHECKING:
    from .predict import PredictionInputs


class SurgicalVideoTask(BaseTask):
    """Per-frame phase recognition over clips; see the module docstring.

    Args:
        num_classes: Phases, from the datamodule.
        class_names: Phase names, from the datamodule.
        tool_names: Tool names, from the datamodule.
        num_frames: Frames per clip (T), from the datamodule.
        temporal: `none` (each frame alone), `tcn` (MS-TCN stage) or `lstm`.
        causal: Frames see only their past (online recognition).
        feature_dim: Size of each frame's feature (the backbone classifier's output).
        hidden_dim: Width of the temporal model.
        temporal_layers: TCN layers (dilations 1..2^(L-1)); LSTM layers (at most 2).
        kernel_size: TCN kernel size.
        dropout: Dropout on the features and in the temporal model.
        tools: Add EndoNet's tool presence head; the phase model sees its outputs.
        tool_weight: Weight of the tool loss.
        freeze_backbone: Freeze the backbone's trunk and train an adapter (see above).
        adapter_dim: Bottleneck of the adapter.
        backbone_checkpoint: A Lightning checkpoint whose `backbone.*` weights start the backbone.
        delta_activation: Threshold of Delta Activation Layers on backbone stages; None: none.
        delta_stages: Indices into the backbone's `feature_info` to put them on; None: all.
        delta_weight: Weight of the delta L1 penalty.
        ctl_stage: Index into `feature_info` after which a CTL block mixes the frames; None: none.
        label_smoothing: Label smoothing of the phase cross-entropy.
        plot_videos: Test videos drawn in the timeline figure.
        **kwargs: See `BaseTask`.
    """

    name = "surgical_video"
    predict_input = "video"
    monitor: ClassVar[str] = "val/acc"
    mode: ClassVar[str] = "max"
    main_metric: ClassVar[str] = "test/acc"

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        tool_names: Sequence[str] = (),
        num_frames: int = 8,
        temporal: TemporalModel = "tcn",
        causal: bool = False,
        feature_dim: int = 128,
        hidden_dim: int = 64,
        temporal_layers: int = 3,
        kernel_size: int = 3,
        dropout: float = 0.1,
        tools: bool = False,
        tool_weight: float = 1.0,
        freeze_backbone: bool = False,
        adapter_dim: int = 32,
        backbone_checkpoint: str | None = None,
        delta_activation: float | None = None,
        delta_stages: Sequence[int] | None = None,
        delta_weight: float = 0.0,
        ctl_stage: int | None = None,
        label_smoothing: float = 0.0,
        plot_videos: int = 4,
        **kwargs,
    ):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.tool_names = list(tool_names)
        if tools and not self.tool_names:
            raise ValueError("task.tools=true needs tool labels, and this data set has none")
        super().__init__(**kwargs)

    # ---- model ---------------------------------------------------------------------------

    def configure_models(self) -> None:
        hp = self.hparams
        name = hp.backbone
        if is_restoration_net(name):
            raise IncompatibleBackboneError(
                f"backbone {name!r} cannot serve task={self.name}: it is an image restoration "
                "network (image -> image) with no per-frame features. Choose a classifier "
                "backbone, e.g. backbone=inceptionnext or backbone=squeezetime."
            )
        self.time_in_channels = folds_time_into_channels(name)
        frames = hp.num_frames
        if self.time_in_channels:
            if hp.delta_activation is not None or hp.ctl_stage is not None:
                raise ValueError(
                    f"backbone {name!r} folds the clip's frames into its channels: it has no "
                    "per-frame maps for task.delta_activation or task.ctl_stage (it has its own "
                    "Channel-Time Learning blocks). Use a 2D backbone for them."
                )
            # one (B, C * T, H, W) input; the classifier emits T features at once
            self.backbone = timm.create_model(
                name, pretrained=False,
                **{**(hp.backbone_kwargs or {}), "in_chans": hp.in_chans * frames,
                   "num_classes": frames * hp.feature_dim},
            )  # fmt: skip
        else:
            self.backbone = self.create_backbone(num_classes=hp.feature_dim)
        if hp.backbone_checkpoint:
            self._load_backbone(hp.backbone_checkpoint)
        if hp.freeze_backbone:
            head = {id(p) for p in _classifier_parameters(self.backbone)}
            for parameter in self.backbone.parameters():
                parameter.requires_grad_(id(parameter) in head)
        self.adapter = (FeatureAdapter(hp.feature_dim, hp.adapter_dim) if hp.freeze_backbone
                        else nn.Identity())  # fmt: skip
        self.feature_dropout = nn.Dropout(hp.dropout)
        self.deltas = nn.ModuleList()
        self.frames_ctl: FramesCTL | None = None
        if hp.delta_activation is not None:
            for module in self._stage_modules(hp.delta_stages, "task.delta_stages"):
                delta = DeltaActivation(hp.delta_activation)
                module.register_forward_hook(_output_hook(delta))
                self.deltas.append(delta)
        if hp.ctl_stage is not None:
            (module,) = self._stage_modules([hp.ctl_stage], "task.ctl_stage")
            info = _feature_info(self.backbone)[hp.ctl_stage]
            self.frames_ctl = FramesCTL(info["num_chs"], frames)
            module.register_forward_hook(_output_hook(self.frames_ctl))
        in_dim = hp.feature_dim
        self.tool_head = None
        if hp.tools:
            self.tool_head = nn.Linear(hp.feature_dim, len(self.tool_names))
            in_dim += len(self.tool_names)  # EndoNet: the phase model sees the tool outputs
        self.temporal = build_temporal_model(hp.temporal, in_dim, hp.hidden_dim,
                                             hp.temporal_layers, hp.kernel_size, hp.causal,
                                             hp.dropout)  # fmt: skip
        self.classifier = nn.Linear(self.temporal.out_dim, self.num_classes)

    def _stage_modules(self, indices: Sequence[int] | None, key: str) -> list[nn.Module]:
        info = _feature_info(self.backbone)
        if not info:
            raise ValueError(f"{key}: backbone {self.hparams.backbone!r} has no feature_info")
        indices = range(len(info)) if indices is None else indices
        try:
            return [self.backbone.get_submodule(info[i]["module"]) for i in indices]
        except (IndexError, AttributeError) as error:
            raise ValueError(
                f"{key}={list(indices)}: backbone {self.hparams.backbone!r} has stages "
                f"0..{len(info) - 1} ({', '.join(d['module'] for d in info)})"
            ) from error

    def _load_backbone(self, path: str) -> None:
        # any task's checkpoint may start the backbone: its weights are matched by name and shape
        checkpoint = load_checkpoint(path, key="task.backbone_checkpoint", trust_hint=None)
        state = checkpoint["state_dict"]
        own = self.backbone.state_dict()
        weights = {
            key.removeprefix("backbone."): value
            for key, value in state.items()
            if key.startswith("backbone.")
            and own.get(key.removeprefix("backbone."), torch.empty(0)).shape == value.shape
        }
        if not weights:
            raise ValueError(f"task.backbone_checkpoint={path!r} has no weights for this backbone")
        self.backbone.load_state_dict(weights, strict=False)

    def train(self, mode: bool = True) -> "SurgicalVideoTask":
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.backbone.eval()  # frozen norms keep their statistics
        return self

    def configure_losses(self) -> None:
        self.tool_criterion = nn.BCEWithLogitsLoss()

    def configure_metrics(self) -> None:
        n = self.num_classes
        args = {"validate_args": False}
        metrics = MetricCollection({
            "acc": MulticlassAccuracy(n, average="micro", **args),
            "precision": MulticlassPrecision(n, average="macro", **args),
            "recall": MulticlassRecall(n, average="macro", **args),
            "f1": MulticlassF1Score(n, average="macro", **args),
            "jaccard": MulticlassJaccardIndex(n, average="macro", **args),
        }, compute_groups=False)  # fmt: skip
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_per_phase = MetricCollection({
            "precision": MulticlassPrecision(n, average="none", **args),
            "recall": MulticlassRecall(n, average="none", **args),
            "f1": MulticlassF1Score(n, average="none", **args),
            "jaccard": MulticlassJaccardIndex(n, average="none", **args),
        }, compute_groups=False)  # fmt: skip
        self.confusion = MulticlassConfusionMatrix(n, normalize="true")

    # ---- forward -------------------------------------------------------------------------

    def frame_features(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) clips -> (B, T, feature_dim) per-frame features."""
        b, t, c, h, w = clip.shape
        if self.time_in_channels:
            # SqueezeTime's folding: (B, C, T, H, W) viewed as (B, C * T, H, W)
            x = clip.transpose(1, 2).reshape(b, c * t, h, w)
        else:
            x = clip.reshape(b * t, c, h, w)
            for module in (*self.deltas, self.frames_ctl):
                if module is not None:
                    module.frames = t
        if self.hparams.freeze_backbone:
            with torch.no_grad():  # no activations kept for the frozen trunk: the memory saving
                features = self.backbone.forward_features(x)
            features = self.backbone.forward_head(features)
        else:
            features = self.backbone(x)
        return features.reshape(b, t, -1)

    def forward(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T, C, H, W) -> `{"phase": (B, T, phases)[, "tools": (B, T, tools)]}` logits."""
        features = self.feature_dropout(self.adapter(self.frame_features(clip)))
        out = {}
        if self.tool_head is not None:
            out["tools"] = self.tool_head(features)
            features = torch.cat([features, out["tools"].sigmoid()], -1)
        out["phase"] = self.classifier(self.temporal(features))
        return out

    # ---- steps ---------------------------------------------------------------------------

    def _shared_step(self, batch: dict, split: str, metrics: MetricCollection) -> tuple:
        out = self(batch["image"])
        mask = batch["mask"]
        logits, target = out["phase"][mask], batch["phase"][mask]
        terms = {"phase": F.cross_entropy(logits, target,
                                          label_smoothing=self.hparams.label_smoothing)}  # fmt: skip
        if self.tool_head is not None:
            terms["tools"] = self.hparams.tool_weight * self.tool_criterion(
                out["tools"][mask], batch["tools"][mask]
            )
        deltas = [d for d in self.deltas if d.penalty is not None]
        if deltas and self.hparams.delta_weight > 0:
            penalty = torch.stack([d.penalty for d in deltas]).mean()
            terms["delta"] = self.hparams.delta_weight * penalty
        loss = sum(terms.values())
        metrics.update(logits, target)
        n = int(mask.sum())
        sync = split != "train"  # evaluation figures are averaged over DDP processes
        self.log_loss(split, loss, n)
        if len(terms) > 1:
            self.log_dict(
                {f"{split}/loss_{k}": v for k, v in terms.items()}, batch_size=n, sync_dist=sync
            )
        if deltas:
            sparsity = torch.stack([d.sparsity for d in deltas]).mean()
            self.log(f"{split}/delta_sparsity", sparsity, batch_size=n, sync_dist=sync)
        self.log_metrics(metrics, split, n)
        return loss, out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._shared_step(batch, "train", self.train_metrics)
        return self.check_finite(loss)

    def on_validation_epoch_start(self) -> None:
        self._tool_scores: list[tuple[torch.Tensor, torch.Tensor]] = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, out = self._shared_step(batch, "val", self.val_metrics)
        self._collect_tools(batch, out)

    def on_validation_epoch_end(self) -> None:
        self._log_tool_map("val")

    def on_test_epoch_start(self) -> None:
        self._tool_scores = []
        self._timeline: dict[int, dict[int, tuple[int, int]]] = {}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, out = self._shared_step(batch, "test", self.test_metrics)
        mask = batch["mask"]
        predictions = out["phase"].argmax(-1)
        self.test_per_phase.update(predictions[mask], batch["phase"][mask])
        self.confusion.update(predictions[mask], batch["phase"][mask])
        self._collect_tools(batch, out)
        for v, frames, truth, predicted, keep in zip(
            batch["video"].tolist(), batch["frame"].tolist(), batch["phase"].tolist(),
            predictions.tolist(), mask.tolist(),
        ):  # fmt: skip
            video = self._timeline.setdefault(v, {})
            video.update({f: (y, p) for f, y, p, k in zip(frames, truth, predicted, keep) if k})

    def on_test_epoch_end(self) -> None:
        self._log_tool_map("test")
        values = self.test_per_phase.compute()
        self.log_dict({
            f"test/{metric}_{phase}": v[i]
            for metric, v in values.items() for i, phase in enumerate(self.class_names)
        })  # fmt: skip
        self.test_per_phase.reset()
        figure, _ = self.confusion.plot(labels=self.class_names)
        figure.set_size_inches(8, 8)
        self.log_figure("test/confusion_matrix", figure)
        self.confusion.reset()
        datamodule = getattr(self.trainer, "datamodule", None)
        videos = getattr(datamodule, "videos", {}).get("test", [])
        for timeline in gather_list([self._timeline]):  # other processes' frames, under DDP
            for v, frames in timeline.items():
                self._timeline.setdefault(v, {}).update(frames)
        shown = sorted(self._timeline)[: self.hparams.plot_videos]
        if shown:
            sequences = []
            for v in shown:
                frames = sorted(self._timeline[v])
                truth, predicted = zip(*(self._timeline[v][f] for f in frames))
                name = videos[v].name if v < len(videos) else f"video {v}"
                sequences.append((name, np.array(truth), np.array(predicted)))
            self.log_figure("test/phase_timeline", timeline_figure(sequences, self.class_names))

    def _collect_tools(self, batch: dict, out: dict) -> None:
        if "tools" in out:
            mask = batch["mask"]
            self._tool_scores.append((out["tools"][mask].detach().sigmoid().cpu(),
                                      batch["tools"][mask].cpu()))  # fmt: skip

    def _log_tool_map(self, split: str) -> None:
        tool_scores, self._tool_scores = gather_list(self._tool_scores), []
        if not tool_scores:
            return
        scores, targets = (torch.cat(x) for x in zip(*tool_scores))
        present = targets.sum(0) > 0  # AP is undefined for a tool absent from the split
        if not present.any():
            return
        ap = multilabel_average_precision(scores[:, present], targets[:, present].long(),
                                          num_labels=int(present.sum()), average="none")  # fmt: skip
        self.log(f"{split}/tool_map", ap.mean())
        if split == "test":
            names = [n for n, p in zip(self.tool_names, present.tolist()) if p]
            self.log_dict({f"test/tool_ap_{n}": v for n, v in zip(names, ap)})

    def extra_results(self) -> dict[str, Any]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        hp = self.hparams
        return {
            "trainable_params": trainable,
            "surgical_video": {
                "temporal": hp.temporal, "causal": hp.causal, "tools": hp.tools,
                "freeze_backbone": hp.freeze_backbone, "delta_activation": hp.delta_activation,
                "time_in_channels": self.time_in_channels, "num_frames": hp.num_frames,
            },
        }  # fmt: skip

    # ---- prediction on any video ---------------------------------------------------------

    @torch.no_grad()
    def frame_outputs(self, frames: torch.Tensor, batch_size: int = 8) -> dict[str, np.ndarray]:
        """Phase probabilities (N, phases) and, with a tool head, tool probabilities (N, tools)
        of every frame of normalised frames (N, C, H, W), tiled into clips."""
        t, n = self.hparams.num_frames, len(frames)
        starts = sorted({max(min(s, n - t), 0) for s in range(0, n, t)})
        outputs: dict[str, np.ndarray] = {}
        self.eval()
        for i in range(0, len(starts), batch_size):
            chunk = starts[i : i + batch_size]
            index = torch.stack([torch.arange(s, s + t).clamp(max=n - 1) for s in chunk])
            out = self(frames[index].to(self.device))
            probabilities = {"phase": out["phase"].softmax(-1)}
            if "tools" in out:
                probabilities["tools"] = out["tools"].sigmoid()
            for key, value in probabilities.items():
                store = outputs.setdefault(key, np.zeros((n, value.shape[-1]), np.float32))
                for s, p in zip(chunk, value.float().cpu().numpy()):
                    last = min(s + t, n)
                    store[s:last] = p[: last - s]
        return outputs

    def predict_frames(self, frames: torch.Tensor, batch_size: int = 8) -> np.ndarray:
        """Phase index of every frame of normalised frames (N, C, H, W), tiled into clips."""
        return self.frame_outputs(frames, batch_size)["phase"].argmax(1)

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`<name>-phases.csv` per video: each sampled frame's index, time, phase and its
        probability, and each tool's presence probability with a tool head; `<name>-phases.png`:
        the phase timeline."""
        written = []
        for files in inputs.batches(1):
            frames, indices, fps = inputs.read_video(files[0])
            outputs = self.frame_outputs(frames)
            phases = outputs["phase"].argmax(1)
            path = inputs.output_path(out_dir, files[0], "-phases.csv")
            tools = outputs.get("tools", np.zeros((len(phases), 0)))
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["frame", "time_s", "phase", "probability",
                                 *(f"tool_{n}" for n in self.tool_names[: tools.shape[1]])])  # fmt: skip
                for i, frame in enumerate(indices):
                    writer.writerow([int(frame), f"{frame / fps:.2f}", self.class_names[phases[i]],
                                     f"{outputs['phase'][i, phases[i]]:.4f}",
                                     *(f"{v:.4f}" for v in tools[i])])  # fmt: skip
            figure = timeline_figure([(inputs.name(files[0]), None, phases)], self.class_names)
            figure.savefig(path.with_suffix(".png"), dpi=110, bbox_inches="tight")
            plt.close(figure)
            written += [path, path.with_suffix(".png")]
        return written

    def export_module(self) -> nn.Module:
        return ClipOutputs(self)

    def export_outputs(self) -> dict[str, str]:
        outputs = {"phase": "(B, T, phases) per-frame phase logits; softmax over the last axis"}
        if self.tool_head is not None:
            outputs["tools"] = "(B, T, tools) per-frame tool presence logits; sigmoid each"
        return outputs


class ClipOutputs(nn.Module):
    """The task's clip -> outputs dict as a tuple, the form the exporters keep in order."""

    def __init__(self, task: SurgicalVideoTask):
        super().__init__()
        self.task = task

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.task(clip)
        return (out["phase"], *([out["tools"]] if "tools" in out else []))


def _feature_info(model: nn.Module) -> list[dict]:
    info = getattr(model, "feature_info", None) or []
    return info.get_dicts() if hasattr(info, "get_dicts") else list(info)


def _classifier_parameters(model: nn.Module) -> list[nn.Parameter]:
    classifier = model.get_classifier()
    modules = classifier if isinstance(classifier, (list, tuple)) else [classifier]
    return [p for m in modules for p in m.parameters()]


def _output_hook(layer: nn.Module):
    """A forward hook that passes a module's tensor output through `layer`."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        return layer(output) if torch.is_tensor(output) else output

    return hook


def timeline_figure(sequences: list[tuple[str, np.ndarray | None, np.ndarray]],
                    class_names: Sequence[str]) -> plt.Figure:  # fmt: skip
    """Per video, colour bars over the frames: the true phases (when known) above the predicted."""
    colours = plt.get_cmap("tab10")(np.arange(len(class_names)) % 10)
    figure, axes = plt.subplots(len(sequences), 1, figsize=(10, 1.3 * len(sequences) + 0.6),
                                squeeze=False)  # fmt: skip
    for ax, (name, truth, predicted) in zip(axes[:, 0], sequences):
        rows, labels, title = [predicted], ["predicted"], name
        if truth is not None:
            rows, labels = [truth, predicted], ["truth", "predicted"]
            title = f"{name}: frame accuracy {float((truth == predicted).mean()):.3f}"
        ax.imshow(colours[np.stack(rows)], aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sampled frame", fontsize=8)
    handles = [Patch(color=colours[i], label=n) for i, n in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return figure


def main(argv: Sequence[str] | None = None) -> None:
    """Per-frame phase predictions of any video: a CSV and a timeline picture."""
    from data.surgical_video import decode_video  # the command line sits above tasks and data

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", help="a task=surgical_video checkpoint (.ckpt)")
    parser.add_argument("video", help="any video file FFmpeg decodes")
    parser.add_argument("--out", default=".", help="folder for <video>-phases.csv/.png")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="unpickle the checkpoint in full, running any code it names")  # fmt: skip
    args = parser.parse_args(argv)
    target = f"{SurgicalVideoTask.__module__}.{SurgicalVideoTask.__qualname__}"
    checkpoint = load_checkpoint(args.checkpoint, task=target, trust=args.trust_checkpoint,
                                 key="checkpoint", trust_hint="--trust-checkpoint")  # fmt: skip
    task = SurgicalVideoTask(**checkpoint["hyper_parameters"])
    task.load_state_dict(checkpoint["state_dict"])
    frames, indices, _, fps = decode_video(Path(args.video), args.sample_fps, args.image_size)
    pretrained = timm.models.get_pretrained_cfg(task.hparams.backbone)
    mean = torch.tensor(getattr(pretrained, "mean", None) or timm.data.IMAGENET_DEFAULT_MEAN)
    std = torch.tensor(getattr(pretrained, "std", None) or timm.data.IMAGENET_DEFAULT_STD)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    predictions = task.predict_frames(x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.video).stem
    with (out / f"{stem}-phases.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "time_s", "phase"])
        for index, p in zip(indices, predictions):
            writer.writerow([int(index), f"{index / fps:.2f}", task.class_names[p]])
    figure = timeline_figure([(stem, None, predictions)], task.class_names)
    figure.savefig(out / f"{stem}-phases.png", dpi=110, bbox_inches="tight")
    print(f"wrote {out / f'{stem}-phases.csv'} and {out / f'{stem}-phases.png'}")


if __name__ == "__main__":
    main()
