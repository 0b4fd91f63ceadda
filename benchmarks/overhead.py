"""What the framework costs, whether the loaders keep up, and what the fast paths gain, per task.

    python -m benchmarks.overhead [--task T ...] [--steps 6] [--repeats 5] [--warmup 2]
        [--fast-paths bf16,channels_last,compile] [--logger wandb|csv|none] [--num-workers N]

For every task's default (`python train.py task=T`), one JSON line:

- `overhead_ratio`: training steps/s of train.py's path (the task module, the composed config,
  its metrics, logging, callbacks and logger, run by Lightning's Trainer) over a bare PyTorch
  loop (forward, the task's loss, backward, gradient clipping, optimiser and scheduler step) on
  the same model, batches, optimiser and schedule. 1.0 means the framework is free.
- `loader_ratio`: samples/s of the task's default training loader (its configured
  `num_workers`) over the samples/s train.py's path consumes. Above 1 the loader keeps up.
- `speedup_<path>`: train.py's path with a fast path switched on over the same path without
  it: `trainer.precision=bf16-mixed`, `task.channels_last=true`, `task.compile=true`.

Both loops read the same batches, taken once from the default loader and kept in memory, so
that data loading is timed apart (the loader ratio). Each repetition times every variant once,
in an order that rotates, so that the load of a shared machine falls on all of them alike; the
line reports the median of the per-repetition ratios and their range. A benchmark, not a test:
the absolute figures depend on the machine and its load, the ratios much less.
"""

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from timm.optim import param_groups_weight_decay

import train

CONF = train.ROOT / "conf"
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
FAST_PATHS = {
    "bf16": ["trainer.precision=bf16-mixed"],
    "channels_last": ["task.channels_last=true"],
    "compile": ["task.compile=true"],
}

Batch = dict[str, Any]


# ---- the bare loop: what a person writes in plain PyTorch for each task ----------------------


def _classification_loss(task, batch: Batch) -> torch.Tensor:
    return task.criterion(task(batch["image"]), batch["label"])


def _segmentation_loss(task, batch: Batch) -> torch.Tensor:
    return task.criterion(task(batch["image"]), batch["mask"])["loss"]


def _detection_loss(task, batch: Batch) -> torch.Tensor:
    targets = [{"boxes": b, "labels": c} for b, c in zip(batch["boxes"], batch["labels"])]
    return sum(task(batch["image"], targets).values())


def _restoration_loss(task, batch: Batch) -> torch.Tensor:
    return task.criterion(task(batch["image"]), batch["target"])


def _reid_loss(task, batch: Batch) -> torch.Tensor:
    labels, hp = batch["label"], task.hparams
    features = task.features(batch["image"])
    _, logits = task.neck(features)
    triplet = task.triplet_loss(features, labels, task.miner(features, labels))
    return hp.ce_weight * task.id_loss(logits, labels) + hp.triplet_weight * triplet


def _volatility_loss(task, batch: Batch) -> torch.Tensor:
    return task.loss(task(batch["image"], batch.get("features")), batch["target"])


def _surgical_video_loss(task, batch: Batch) -> torch.Tensor:
    mask = batch["mask"]
    logits = task(batch["image"])["phase"][mask]
    return F.cross_entropy(
        logits, batch["phase"][mask], label_smoothing=task.hparams.label_smoothing
    )


BARE_LOSSES: dict[str, Callable[[Any, Batch], torch.Tensor]] = {
    "classification": _classification_loss,
    "segmentation": _segmentation_loss,
    "detection": _detection_loss,
    "super_resolution": _restoration_loss,
    "denoising": _restoration_loss,
    "reid": _reid_loss,
    "volatility": _volatility_loss,
    "surgical_video": _surgical_video_loss,
}


def bare_samples_per_second(
    task, name: str, cfg: DictConfig, batches: list[Batch], warmup: int
) -> float:
    """Samples/s of a plain loop over `batches`, after `warmup` untimed steps.

    The optimiser and schedule are those of `BaseTask.configure_optimizers` (AdamW without decay
    on norms and biases, the task's scheduler stepped every step), with the trainer's gradient
    clipping; a fresh optimiser per call, as a fresh Trainer makes one per fit.
    """
    make_optimizer = task.hparams.optimizer
    weight_decay = getattr(make_optimizer, "keywords", {}).get("weight_decay", 0.0)
    optimizer = make_optimizer(params=param_groups_weight_decay(task, weight_decay))
    scheduler = task.hparams.scheduler(optimizer=optimizer, total_steps=len(batches))
    clip = cfg.trainer.get("gradient_clip_val")
    loss_of = BARE_LOSSES[name]
    task.train()
    starts = []
    for batch in batches:
        starts.append(time.perf_counter())
        loss = loss_of(task, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(task.parameters(), clip)
        optimizer.step()
        scheduler.step()
    return _rate(starts, batches, warmup)


def _rate(starts: list[float], batches: list[Batch], warmup: int) -> float:
    """Samples/s from the start of step `warmup` to the start of the last step."""
    samples = sum(len(b["image"]) for b in batches[warmup:-1])
    return samples / (starts[-1] - starts[warmup])


# ---- train.py's path -----------------------------------------------------------------------


def compose_run(task_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `python train.py task=<task_name> <overrides>` runs, writing to `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"task={task_name}", *overrides], return_hydra_config=True
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def build_datamodule_and_task(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The datamodule and task train.run builds from `cfg`."""
    train.check_backbone(cfg.backbone.name)
    train.check_task_data(cfg)
    train.apply_min_input_size(cfg)
    L.seed_everything(cfg.seed, workers=True)
    mean, std = train.backbone_normalization(cfg.backbone.name)
    datamodule = train.build(cfg.data, mean=mean, std=std)
    task = train.build(
        cfg.task,
        backbone=cfg.backbone.name,
        backbone_kwargs=OmegaConf.to_container(cfg.backbone.kwargs, resolve=True),
        **datamodule.task_kwargs,
    )
    return datamodule, task


class Replay:
    """The same batches, as one loader (Lightning reads a plain list as a list of loaders)."""

    def __init__(self, batches: list[Batch]):
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StepClock(L.Callback):
    """The time at which each training batch starts (after Lightning has fetched it)."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())


def lightning_samples_per_second(
    cfg: DictConfig, task, loggers: list, batches: list[Batch], warmup: int
) -> float:
    """Samples/s of `Trainer.fit` over `batches`, with the trainer and callbacks of train.run.

    Validation is switched off (it is not training throughput) and the run stops after the
    batches: a `max_steps` cap, as a user's `trainer.max_steps` would.
    """
    clock = StepClock()
    # a fresh run folder per fit: with OnExceptionCheckpoint among the callbacks, Lightning
    # resumes from a last.ckpt it finds in its checkpoint folder
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(dir=cfg.hydra.runtime.output_dir, prefix="fit-")
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*train.make_callbacks(cfg, bool(loggers)), clock],
        logger=loggers or False,
        max_steps=len(batches),
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, train_dataloaders=Replay(batches))
    return _rate(clock.starts, batches, warmup)


def loader_samples_per_second(datamodule: L.LightningDataModule, count: int) -> float:
    """Samples/s of the default training loader over `count` batches, worker start-up excluded."""
    loader: Iterator = iter(datamodule.train_dataloader())
    next(loader)  # the first batch waits for the workers to start
    start, samples = time.perf_counter(), 0
    for _, batch in zip(range(count), loader):
        samples += len(batch["image"])
    return samples / (time.perf_counter() - start) if samples else float("nan")


# ---- one task ------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_task(name: str, args: argparse.Namespace) -> dict[str, Any]:
    common = [f"logger={args.logger}"] if args.logger else []
    if args.num_workers is not None:
        common.append(f"data.num_workers={args.num_workers}")
    with tempfile.TemporaryDirectory(prefix="overhead-") as folder:
        variants = {"default": []} | {p: FAST_PATHS[p] for p in args.fast_paths}
        built = {}
        for variant, overrides in variants.items():
            cfg = compose_run(name, [*common, *overrides], Path(folder) / variant)
            datamodule, task = build_datamodule_and_task(cfg)
            built[variant] = (cfg, datamodule, task, train.make_loggers(cfg))
        cfg, datamodule = built["default"][:2]
        datamodule.setup("fit")
        # the same batches for every variant, from the default loader (its augmentation included)
        loader = iter(datamodule.train_dataloader())
        batches = [next(loader) for _ in range(args.warmup + args.steps + 1)]
        del loader

        # compilation, first allocations and lazy set-up happen here, untimed
        for vcfg, _, task, loggers in built.values():
            lightning_samples_per_second(vcfg, task, loggers, batches, args.warmup)

        timings: dict[str, list[float]] = {k: [] for k in ["bare", *variants, "loader"]}
        order = list(timings)
        for repeat in range(args.repeats):
            for what in order[repeat % len(order) :] + order[: repeat % len(order)]:
                if what == "bare":
                    task = built["default"][2]
                    value = bare_samples_per_second(task, name, cfg, batches, args.warmup)
                elif what == "loader":
                    value = loader_samples_per_second(datamodule, args.loader_batches)
                else:
                    vcfg, _, task, loggers = built[what]
                    value = lightning_samples_per_second(vcfg, task, loggers, batches, args.warmup)
                timings[what].append(value)

    default = timings["default"]
    line = {
        "task": name,
        "model": cfg.backbone.name,
        "batch_size": len(batches[0]["image"]),
        "overhead_ratio": _summary([d / b for d, b in zip(default, timings["bare"])]),
        "loader_ratio": _summary([lo / d for lo, d in zip(timings["loader"], default)]),
        "num_workers": cfg.data.num_workers,
        **{
            f"speedup_{p}": _summary([f / d for f, d in zip(timings[p], default)])
            for p in args.fast_paths
        },
        "samples_per_s": {k: statistics.median(v) for k, v in timings.items()},
        "repeats": args.repeats,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "date": datetime.date.today().isoformat(),
    }
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", nargs="+", choices=TASKS, default=TASKS)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loader-batches", type=int, default=8)
    parser.add_argument(
        "--fast-paths", type=lambda s: [p for p in s.split(",") if p], default=list(FAST_PATHS),
        help=f"comma-separated subset of {','.join(FAST_PATHS)}; empty for none",
    )  # fmt: skip
    parser.add_argument(
        "--logger", default=None, help="a conf/logger choice; default: train.yaml's"
    )
    parser.add_argument("--num-workers", type=int, default=None, help="default: the data config's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads; default: torch's")
    args = parser.parse_args(argv)
    unknown = set(args.fast_paths) - set(FAST_PATHS)
    if unknown:
        parser.error(f"unknown fast paths {sorted(unknown)}; choose from {list(FAST_PATHS)}")
    os.environ.setdefault("CONVZOO_ROOT", str(train.ROOT))
    torch.set_float32_matmul_precision("high")  # as train.py's entry point
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.task:
        # Lightning's summaries and progress bar go to stderr: stdout holds the JSON lines only
        with contextlib.redirect_stdout(sys.stderr):
            line = measure_task(name, args)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
