"""One job of a Hydra multirun: recorded, locked, skipped when done, resumed when interrupted.

A sweep is a folder of job folders (`<sweep dir>/<job num>/`), each ending with a results.json
whose `status` is `running`, `completed`, `failed` or `interrupted`. Re-running the same sweep
command into the same `hydra.sweep.dir` reads those records: completed jobs are skipped,
interrupted ones resume from their `last.ckpt`, failed ones run again. Hydra has no such notion
(facebookresearch/hydra#1407), so it lives here, around the one function a job runs. The tasks
and data modules never see any of it.
"""

import fcntl
import json
import os
import shutil
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from .results import RESULTS_FILE, write_results
from .wandb_runs import finish_wandb_run

LOCK_FILE = ".job.lock"


def read_record(folder: Path) -> dict[str, Any]:
    """The job's results.json, or {} when there is none or it cannot be read."""
    try:
        return json.loads((folder / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def job_lock(folder: Path) -> Iterator[bool]:
    """Hold an exclusive lock on a job folder; yields False when another process holds it.

    An OS file lock (flock) is released by the kernel when its process dies, so a killed sweep
    never leaves a stale lock behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_identity(cfg: DictConfig) -> dict[str, Any]:
    """What names a job in its record: its number, overrides and choices."""
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    return {
        "job": hydra_cfg.job.num,
        "overrides": list(hydra_cfg.overrides.task),
        "choices": {k: choices.get(k) for k in ("backbone", "task", "data")}
        | {"model": cfg.backbone.get("name")},
    }


def threads_per_job(launcher: DictConfig, cpu_count: int | None = None) -> int | None:
    """Torch threads for each of a parallel launcher's jobs: the cores shared out, at least one.

    joblib's `n_jobs` (-1: one job per core) runs that many jobs at once; each would otherwise
    start as many threads as there are cores, and they would fight over them. None: the
    launcher runs one job at a time, and torch's own default stands.
    """
    cores = cpu_count or os.cpu_count() or 1
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return None
    n_jobs = int(launcher.get("n_jobs", -1))
    parallel = cores if n_jobs < 1 else n_jobs
    return max(1, cores // parallel)


def run_job(cfg: DictConfig, run: Callable[[DictConfig], dict[str, Any]], log: Callable) -> Any:
    """Run one sweep job through `run`; a failure is recorded, never raised to the sweep.

    Returns the job's main metric, or None when it failed or another sweep is running it
    (Hydra's sweepers read the return value).
    """
    folder = Path(cfg.paths.output_dir)
    identity = job_identity(cfg)
    with job_lock(folder) as locked:
        if not locked:
            log(
                f"[yellow]job {identity['job']}: {folder} is being run by another sweep; skipped[/]"
            )
            return None
        previous = read_record(folder)
        if previous and previous.get("overrides") != identity["overrides"]:
            log(
                f"[red]job {identity['job']} not run[/]: {folder} holds a job with other overrides "
                f"({previous.get('overrides')}): two different sweeps share hydra.sweep.dir="
                f"{folder.parent}. Give this sweep a directory of its own."
            )
            return None
        if previous.get("status") == "completed":
            log(f"job {identity['job']}: completed earlier ({folder / RESULTS_FILE}); skipped")
            return previous.get("metrics", {}).get(previous.get("main_metric"))
        if previous.get("status") == "failed" and (folder / "checkpoints").is_dir():
            # a rerun starts afresh: Lightning would resume from the failure's interrupted.ckpt
            stale = folder / "checkpoints.failed"
            shutil.rmtree(stale, ignore_errors=True)
            (folder / "checkpoints").rename(stale)
        last = folder / "checkpoints" / "last.ckpt"
        if previous.get("status") in ("running", "interrupted") and last.is_file():
            if not cfg.get("ckpt_path"):
                log(f"job {identity['job']}: interrupted earlier; resuming from {last}")
                with open_dict(cfg):
                    cfg.ckpt_path = str(last)
        write_results(folder / RESULTS_FILE, {**identity, "status": "running"})
        try:
            results = run(cfg)
        except KeyboardInterrupt:
            # a signalled run has written its metrics and resume command: keep them
            record = {**read_record(folder), **identity, "status": "interrupted"}
            write_results(folder / RESULTS_FILE, record)
            raise
        except Exception as error:  # noqa: BLE001  (any failure is this job's, not the sweep's)
            record = {
                **identity,
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
            write_results(folder / RESULTS_FILE, record)
            log(f"[red]job {identity['job']} failed[/]: {record['error']}")
            finish_wandb_run(failed=True)
            return None
    return results["metrics"].get(results["main_metric"])
