"""Checks before a run builds anything: what it writes can be written, what it reads exists.

Each of these would otherwise fail late and obscurely: a read-only log dir in Hydra's `mkdir`,
with a bare traceback; a full disk at the first checkpoint, after an epoch of work; a missing
data root or a read-only frame cache in the datamodule's `setup`, after the model is built.

The free-space floor (`paths.min_free_mb`, 256 MiB by default) is not an estimate of what a run
writes (two checkpoints of a 30M-parameter model with Adam's moments take about 700 MB): it
refuses a disk that is full or nearly so, where every run would fail. The write probe catches a
disk that is full to the byte, and quotas, which free space alone does not show.
"""

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

DEFAULT_MIN_FREE_MB = 256

REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a folder should be",
}


class StorageError(OSError):
    """A folder the run must write cannot be written, or its disk is (nearly) full."""


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists (what a later `mkdir -p` would write into)."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, what: str) -> None:
    """Write (and remove) a small file where `folder` is or will be created."""
    target = nearest_existing(folder)
    try:
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
        with tempfile.NamedTemporaryFile(dir=target, prefix=".convzoo-preflight-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        reason = REASONS.get(error.errno, error.strerror or type(error).__name__)
        raise StorageError(
            f"{what}={str(folder)!r} cannot be written: {reason} ({error}). "
            "Point it at a writable folder",
        ) from error


def check_free_space(folder: Path, what: str, minimum_mb: float) -> None:
    free_mb = shutil.disk_usage(nearest_existing(folder)).free / 2**20
    if free_mb < minimum_mb:
        raise StorageError(
            f"{what}={str(folder)!r}: {free_mb:.0f} MiB free on its disk, the run needs at "
            f"least paths.min_free_mb={minimum_mb} MiB for checkpoints and logs. Free some "
            "space, point it at another disk, or lower paths.min_free_mb",
        )


def check_output_folder(folder: Path, what: str, paths: DictConfig) -> None:
    check_writable(folder, what)
    check_free_space(folder, what, paths.get("min_free_mb", DEFAULT_MIN_FREE_MB))


def _is_glob(value: str) -> bool:
    return any(c in Path(value).name for c in "*?[")


def check_data_inputs(data: DictConfig) -> None:
    """The files and folders the datamodule reads (its `input_keys`) exist."""
    for key in getattr(get_class(data._target_), "input_keys", ()):
        if OmegaConf.is_missing(data, key) or not data.get(key):
            continue  # a mandatory value left out is Hydra's error, at instantiation
        path = Path(str(data[key])).expanduser()
        if _is_glob(str(path)):
            if not any(path.parent.glob(path.name)):
                raise FileNotFoundError(f"no files match data.{key}={str(data[key])!r}")
        elif not path.exists():
            raise FileNotFoundError(f"data.{key}={str(data[key])!r} does not exist")


def check_data_caches(data: DictConfig) -> None:
    """The folders the datamodule caches into (its `cache_keys`) can be written."""
    for key in getattr(get_class(data._target_), "cache_keys", ()):
        if data.get(key):
            check_writable(Path(str(data[key])), f"data.{key}")


def preflight(cfg: DictConfig) -> None:
    """Every check, on a composed config (called by train.py's `run`, before anything is built)."""
    check_output_folder(Path(cfg.paths.output_dir), "paths.output_dir", cfg.paths)
    check_data_inputs(cfg.data)
    check_data_caches(cfg.data)


class LogDirPreflight(Callback):
    """Hydra callback: check the run (or sweep) folder before Hydra creates it.

    Hydra turns a callback's exceptions into warnings and goes on, so a failed check prints its
    message and exits, as `tasks.results.check_override_keys` does.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the run folder's name reads Hydra's runtime (`${hydra:runtime.choices.task}`), which
        # run_job sets from this same config as its first step: set it a step earlier
        HydraConfig.instance().set_config(config)
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    def _check(self, config: DictConfig, key: str) -> None:
        try:
            check_output_folder(Path(OmegaConf.select(config, key)), key, config.paths)
        except StorageError as error:
            print(f"Error: {error}", file=sys.stderr)
            raise SystemExit(1) from error
