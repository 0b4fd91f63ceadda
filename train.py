"""convzoo's one entry point: compose the config, build data, task and trainer, fit and test.

python train.py                                   # InceptionNeXt on digits, classification
python train.py backbone=hornet task=segmentation
python train.py -m backbone=inceptionnext,convnext,hornet
python train.py mode=test ckpt_path=logs/.../checkpoints/last.ckpt
python train.py mode=predict ckpt_path=... input=photos/   # predictions on new files
python train.py mode=export ckpt_path=...                   # ONNX + torch.export, parity-checked
"""

import difflib
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import timm
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

import zoo  # noqa: F401  (registers the zoo's backbones in timm)
from tasks.callbacks import Throughput
from tasks.checkpoints import ConfigInCheckpoint, load_checkpoint
from tasks.export import export
from tasks.predict import InferenceRecord, predict
from tasks.preflight import preflight
from tasks.results import RESULTS_FILE, count_gmacs, count_parameters, git_commit, write_results
from tasks.rng_state import RandomState
from tasks.signals import RunInterrupted, StopOnSignal, record_interruption
from tasks.sweep import run_job, threads_per_job
from tasks.wandb_runs import finish_wandb_run, wandb_has_credentials

ROOT = Path(__file__).resolve().parent
console = Console()

# `${class_attr:${task._target_},monitor}`: configs read what a class owns (its monitor, its mode)
# instead of writing it a second time
OmegaConf.register_new_resolver(
    "class_attr", lambda target, attr: getattr(get_class(target), attr), replace=True
)


class ConfigError(ValueError):
    """A configuration that cannot run, found before anything is built."""


def check_backbone(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"backbone.name={name!r} is not a model in timm's registry (the zoo's included).{hint} "
        "List them with: python -c \"import timm, zoo; print(timm.list_models('*pattern*'))\""
    )


def data_configs_for(task_name: str) -> list[str]:
    """Names of the data configs whose datamodule serves `task_name`."""
    names = []
    for path in sorted((ROOT / "conf" / "data").glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        if target and getattr(get_class(target), "task", None) == task_name:
            names.append(path.stem)
    return names


def check_task_data(cfg: DictConfig) -> None:
    task_cls, data_cls = get_class(cfg.task._target_), get_class(cfg.data._target_)
    if task_cls.name != data_cls.task:
        choices = HydraConfig.get().runtime.choices
        raise ConfigError(
            f"data={choices.get('data')} is {data_cls.task} data and cannot feed "
            f"task={choices.get('task')}. Data sets for {task_cls.name}: "
            f"{', '.join(data_configs_for(task_cls.name))}"
        )


def check_run(cfg: DictConfig) -> None:
    modes = ("train", "test", "predict", "export")
    if cfg.mode not in modes:
        raise ConfigError(f"mode must be one of {', '.join(modes)}; got mode={cfg.mode!r}")
    if cfg.mode != "train" and not cfg.ckpt_path:
        raise ConfigError(f"mode={cfg.mode} uses a checkpoint: set ckpt_path=<path to .ckpt>")
    if cfg.mode == "predict" and not cfg.get("input"):
        raise ConfigError("mode=predict needs input=<an image/video/CSV file, a folder or a glob>")
    if cfg.ckpt_path and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path!r}: no such checkpoint file")
    check_distributed_launch(cfg)


def check_distributed_launch(cfg: DictConfig) -> None:
    """Refuse DDP inside a local multirun: Lightning starts each extra process by running
    train.py again with the same arguments, which would start the whole sweep again."""
    relaunches = cfg.trainer.get("strategy") == "ddp" and not SLURMEnvironment.detect()
    if relaunches and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            "trainer=ddp cannot run inside a local multirun (-m): Lightning starts each DDP "
            "process by running train.py again. Run DDP jobs one at a time, or sweep on SLURM "
            "(hydra/launcher=slurm), where SLURM starts the processes."
        )


def check_checkpoint(cfg: DictConfig) -> None:
    """Refuse a `ckpt_path` that is unreadable, unsafe, or of another task or backbone."""
    if not cfg.ckpt_path:
        return
    if cfg.trust_checkpoint:
        console.print(f"[yellow]trust_checkpoint=true: unpickling {cfg.ckpt_path} in full[/]")
    load_checkpoint(
        cfg.ckpt_path,
        task=cfg.task._target_,
        backbone=cfg.backbone.name,
        trust=cfg.trust_checkpoint,
    )


def apply_min_input_size(cfg: DictConfig) -> None:
    """Raise `data.image_size` to the backbone config's `min_input_size`, saying so.

    Some models cannot take small images at all (GhostNetV2's attention pools its last 1x1 map;
    CrossViT's two patch grids must both tile the image): upsampling the data is the only way
    they run on the small embedded data sets, and a user should see that it happened.
    """
    needed = cfg.backbone.get("min_input_size")
    size = cfg.data.get("image_size")
    if needed is None or size is None or size >= needed:
        return
    console.print(
        f"[yellow]backbone {cfg.backbone.name} needs images of at least {needed} px: "
        f"data.image_size {size} -> {needed}[/yellow]"
    )
    cfg.data.image_size = needed


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of the backbone's pretrained_cfg (ImageNet's when it has none)."""
    pretrained = timm.models.get_pretrained_cfg(name)
    mean = getattr(pretrained, "mean", None) or timm.data.IMAGENET_DEFAULT_MEAN
    std = getattr(pretrained, "std", None) or timm.data.IMAGENET_DEFAULT_STD
    return tuple(mean), tuple(std)


def wandb_run_identity(cfg: DictConfig) -> dict[str, Any]:
    """A W&B run's name, tags, job type and group: what its dashboards filter and group by.

    Named `<model>-<task>-<data>`, tagged with each choice and, for the operator grid, the token
    mixer; one group per sweep, so that a sweep's runs are compared in one panel.
    """
    choices = HydraConfig.get().runtime.choices
    task, data, backbone = choices.get("task"), choices.get("data"), choices.get("backbone")
    tags = [*cfg.get("tags", []), f"backbone:{backbone}", f"model:{cfg.backbone.name}"]
    tags += [f"task:{task}", f"data:{data}"]
    if cfg.backbone.get("mixer"):
        tags.append(f"mixer:{cfg.backbone.mixer}")
    identity = {"name": f"{cfg.backbone.name}-{task}-{data}", "tags": tags, "job_type": task}
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        identity["group"] = Path(HydraConfig.get().sweep.dir).name
    return identity


def make_loggers(cfg: DictConfig) -> list:
    loggers = []
    for _name, logger_cfg in (cfg.get("logger") or {}).items():
        overrides: dict[str, Any] = {}
        if "WandbLogger" in logger_cfg._target_:
            overrides |= wandb_run_identity(cfg)
            if not logger_cfg.offline and not wandb_has_credentials():
                overrides["offline"] = True
                console.print(
                    "[yellow]W&B: no credentials, logging offline[/]; upload later with "
                    f"`wandb sync {Path(logger_cfg.save_dir) / 'wandb'}/offline-run-*`",
                    soft_wrap=True,
                )
        loggers.append(instantiate(logger_cfg, **overrides))
    return loggers


def make_callbacks(cfg: DictConfig, with_logger: bool) -> list:
    callbacks = [
        instantiate(cb_cfg)
        for cb_cfg in (cfg.get("callbacks") or {}).values()
        # a learning-rate monitor without a logger has nowhere to write
        if with_logger or not cb_cfg._target_.endswith("LearningRateMonitor")
    ]
    run_config = OmegaConf.to_container(cfg, resolve=True)
    run_config.pop("hydra", None)  # present only where tests compose with Hydra's own config
    return [*callbacks, ConfigInCheckpoint(run_config)]


def gather_results(
    cfg: DictConfig, task: L.LightningModule, datamodule: L.LightningDataModule, trainer: L.Trainer
) -> dict[str, Any]:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    throughput = next((c for c in trainer.callbacks if isinstance(c, Throughput)), None)
    example = next(iter(datamodule.test_dataloader()))["image"][:1].to(task.device)
    checkpoint = trainer.checkpoint_callback
    choices = dict(HydraConfig.get().runtime.choices)
    return {
        "job": HydraConfig.get().job.get("num")
        if HydraConfig.get().mode == RunMode.MULTIRUN
        else None,
        "status": "completed",
        "overrides": list(HydraConfig.get().overrides.task),
        "main_metric": task.main_metric,
        "main_metric_mode": task.mode,
        "metrics": metrics,
        "choices": {k: choices.get(k) for k in ("backbone", "task", "data")}
        | {"model": cfg.backbone.name},
        "params": count_parameters(task),
        "params_m": count_parameters(task) / 1e6,
        "gmacs": count_gmacs(task, example),
        "input_size": list(example.shape[1:]),
        "train_images_per_s": throughput.images_per_second("train") if throughput else None,
        "infer_images_per_s": throughput.images_per_second("test") if throughput else None,
        "epochs": trainer.current_epoch,
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or cfg.ckpt_path,
        "git_commit": git_commit(ROOT),
        "seed": cfg.seed,
        "torch_threads": torch.get_num_threads(),
        "mode": cfg.mode,
        **task.extra_results(),
    }


def wandb_summary(results: dict[str, Any]) -> dict[str, Any]:
    """results.json flattened for a W&B run summary (its scatter and parallel-coordinates panels)."""
    keys = ("params", "params_m", "gmacs", "train_images_per_s", "infer_images_per_s", "epochs")
    return {**results["metrics"], **{k: results[k] for k in keys if results.get(k) is not None}}


def print_results(results: dict[str, Any], path: Path) -> None:
    table = Table(
        title=f"{results['choices']['model']} / {results['choices']['task']} / {results['choices']['data']}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results["metrics"].items():
        table.add_row(f"[bold]{key}[/]" if key == results["main_metric"] else key, f"{value:.4f}")
    for key in ("params_m", "gmacs", "train_images_per_s", "infer_images_per_s"):
        if results[key] is not None:
            table.add_row(key, f"{results[key]:.3f}")
    console.print(table)
    console.print(f"results: {path}")


def build(cfg: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, re-raising the object's own error (it names the key and the fix)."""
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as error:
        if error.__cause__ is not None:
            raise error.__cause__ from None
        raise


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test (mode=train) or test (mode=test); return what results.json holds.

    mode=predict and mode=export read everything from the checkpoint (its task, data settings
    and transform), whatever task and data the command line composes.
    """
    check_run(cfg)
    match cfg.mode:
        case "predict":
            return predict(cfg.ckpt_path, cfg.input, Path(cfg.paths.output_dir))
        case "export":
            return export(cfg.ckpt_path, Path(cfg.paths.output_dir))
    check_backbone(cfg.backbone.name)
    check_task_data(cfg)
    check_checkpoint(cfg)
    preflight(cfg)  # folders written can be written, data read exists (tasks/preflight.py)
    apply_min_input_size(cfg)
    L.seed_everything(cfg.seed, workers=True)

    mean, std = backbone_normalization(cfg.backbone.name)
    datamodule = build(cfg.data, mean=mean, std=std)
    # plain containers all the way down, the optimiser's and scheduler's configs unbuilt: the
    # task's hyper-parameters go into checkpoints, which must hold plain data only
    task = build(
        cfg.task,
        _recursive_=False,
        _convert_="all",
        backbone=cfg.backbone.name,
        backbone_kwargs=OmegaConf.to_container(cfg.backbone.kwargs, resolve=True),
        **datamodule.task_kwargs,
    )
    loggers = make_loggers(cfg)
    # run-level guarantees, whatever callbacks= selects: exact resume, a clean stop on signals,
    # and a record in every checkpoint of how to use it later (mode=predict, mode=export)
    stop = StopOnSignal()
    record = InferenceRecord({**OmegaConf.to_container(cfg.data, resolve=True), "mean": mean,
                              "std": std})  # fmt: skip
    callbacks = [*make_callbacks(cfg, bool(loggers)), RandomState(), stop, record]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    # checkpoints hold plain data (tasks/checkpoints.py): torch's weights-only unpickler reads
    # them and runs nothing; only a user's trust_checkpoint=true unpickles ckpt_path in full
    weights_only = not cfg.trust_checkpoint
    started = time.perf_counter()
    try:
        with stop:
            if cfg.mode == "train":
                trainer.fit(
                    task, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=weights_only
                )
                best = getattr(trainer.checkpoint_callback, "best_model_path", "")
                trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            else:
                trainer.test(
                    task, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=weights_only
                )
    except SIGTERMException:  # Lightning's stop on a signal (tasks/signals.py)
        finish_wandb_run(failed=True)
        raise record_interruption(cfg, task, trainer, stop.received or 15) from None

    results = gather_results(cfg, task, datamodule, trainer)
    results["wall_seconds"] = time.perf_counter() - started
    if not trainer.is_global_zero:
        return results  # under DDP the first process writes the run's one results.json
    path = Path(cfg.paths.output_dir) / RESULTS_FILE
    write_results(path, results)
    print_results(results, path)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(wandb_summary(results))
    finish_wandb_run(failed=False)  # the next job of a sweep starts a run of its own
    return results


def main(cfg: DictConfig) -> float | None:
    """Hydra's task function: one run, or one job of a multirun."""
    # the return value is what Hydra's sweepers optimise
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        threads = threads_per_job(HydraConfig.get().launcher)
        if threads is not None:
            torch.set_num_threads(threads)
        return run_job(cfg, run, log=console.print)
    results = run(cfg)
    return results["metrics"].get(results["main_metric"]) if "metrics" in results else None


if __name__ == "__main__":
    os.environ.setdefault("CONVZOO_ROOT", str(ROOT))  # read by conf/paths (see there why)
    # Parallel launchers (joblib's loky, submitit) pickle the task function. Taken from the
    # module `train`, not `__main__`, it pickles by reference, and the workers import it from
    # ROOT; from `__main__` cloudpickle would copy it with its globals (a console and a lock).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    torch.set_float32_matmul_precision("high")
    import train

    try:
        hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="train")(
            train.main
        )()
    except RunInterrupted as interrupted:  # results and the resume command are written
        sys.exit(interrupted.exit_code)
