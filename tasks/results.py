"""A run's results.json, and the summary table a sweep gathers from them."""

import csv
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from .wandb_runs import log_sweep_table

RESULTS_FILE = "results.json"


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: torch.nn.Module, example: torch.Tensor) -> float | None:
    """Multiply-accumulates of one forward pass on `example`, in billions (FLOPs / 2).

    Counted by torch's own FlopCounterMode; operators it does not know count zero.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    except Exception:  # noqa: BLE001  (a model the counter cannot trace still gets its results)
        return None
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / example.shape[0] / 1e9


def git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("-dirty" if dirty else "")


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Written beside, then renamed over: a full disk or a kill leaves the previous record whole."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(results, indent=2, default=float) + "\n")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def read_results(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{RESULTS_FILE}"))]


def summary_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One flat row per job, best first by each job's main metric; and the column order."""

    def flat(r: dict) -> dict:
        row = {"job": r.get("job"), "status": r.get("status", "completed"), **r.get("choices", {})}
        row.update({k: v for k, v in r.get("metrics", {}).items()})
        row.update(
            {k: r.get(k) for k in ("params_m", "gmacs", "train_images_per_s", "infer_images_per_s")}
        )
        row["error"] = r.get("error")
        return row

    def key(r: dict) -> float:
        value = r.get("metrics", {}).get(r.get("main_metric", ""), float("nan"))
        return -value if r.get("main_metric_mode") == "max" else value

    ordered = sorted(results, key=lambda r: (key(r) != key(r), key(r)))  # NaN last
    rows = [flat(r) for r in ordered]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return columns, rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_summary(sweep_dir: Path) -> Path | None:
    """Write summary.csv and summary.md in `sweep_dir` from its jobs' results.json."""
    results = read_results(sweep_dir)
    if not results:
        return None
    columns, rows = summary_rows(results)
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return sweep_dir / "summary.md"


def unknown_key_message(config: DictConfig, key: str) -> str | None:
    """None when `key` is in `config`; else what is wrong, with the closest existing keys."""
    parts = key.split(".")
    for depth in range(1, len(parts) + 1):
        parent_key, name = ".".join(parts[: depth - 1]), parts[depth - 1]
        parent = (
            OmegaConf.select(config, parent_key, throw_on_resolution_failure=False)
            if parent_key
            else config
        )
        if not isinstance(parent, DictConfig):
            return None  # a list or a value: Hydra's own check says what is wrong
        if name not in parent:
            siblings = [f"{parent_key}.{k}" if parent_key else str(k) for k in parent]
            close = difflib.get_close_matches(".".join(parts[:depth]), siblings, n=3, cutoff=0.5)
            hint = f" Closest: {', '.join(close)}." if close else ""
            return f"the config has no key {'.'.join(parts[:depth])!r}.{hint}"
    return None


def check_override_keys(config: DictConfig, overrides: list[str]) -> None:
    """Refuse a sweep whose overrides name keys the config lacks, naming the closest keys.

    Hydra refuses them too, but without suggestions. Keys under a group that the sweep itself
    switches (`task=a,b task.x=1,2`) are left to Hydra: the base config shows only one of those
    groups. Exits (status 2) before any job starts; an exception would only be a warning here,
    as Hydra turns a callback's exceptions into warnings.
    """
    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    for override in parsed:
        key = override.key_or_group
        if override.is_add() or override.is_delete() or override.is_force_add() or "." not in key:
            continue
        if key.startswith("hydra.") or key.split(".")[0] in swept:
            continue
        problem = unknown_key_message(config, key)
        if problem:
            print(
                f"{override.input_line}: {problem} Add a new key with +{key}=..., or list the "
                "keys with: python train.py --cfg job",
                file=sys.stderr,
            )
            raise SystemExit(2)


def failed_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The records of the jobs of `sweep_dir` that did not complete."""
    return [r for r in read_results(sweep_dir) if r.get("status", "completed") != "completed"]


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, gather the jobs into one table.

    A sweep whose jobs did not all complete lists them and exits with status 1, so that a
    script or a CI job running the sweep sees the failure.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_override_keys(config, list(config.hydra.overrides.task))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        path = write_summary(sweep_dir)
        if path is not None:
            print(f"Sweep summary: {path}\n{path.read_text()}")
            wandb_cfg = OmegaConf.select(config, "logger.wandb", throw_on_resolution_failure=False)
            if wandb_cfg is not None:
                columns, rows = summary_rows(read_results(sweep_dir))
                folder = log_sweep_table(
                    sweep_dir, columns, rows, project=wandb_cfg.project, offline=wandb_cfg.offline
                )
                print(f"W&B: sweep summary table in {folder}")
        failed = failed_jobs(sweep_dir)
        for record in failed:
            print(f"job {record.get('job')} {record.get('status')}: {record.get('error', '')}")
        if failed:
            print(f"{len(failed)} job(s) of the sweep did not complete; rerun the same command "
                  f"with hydra.sweep.dir={sweep_dir} to run only those.")  # fmt: skip
            raise SystemExit(1)
