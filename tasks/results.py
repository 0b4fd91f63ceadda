"""A run's results.json, and the summary table a sweep gathers from them."""

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

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
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")


def read_results(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{RESULTS_FILE}"))]


def summary_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One flat row per job, best first by each job's main metric; and the column order."""

    def flat(r: dict) -> dict:
        row = {"job": r.get("job"), **r.get("choices", {})}
        row.update({k: v for k, v in r.get("metrics", {}).items()})
        row.update(
            {k: r.get(k) for k in ("params_m", "gmacs", "train_images_per_s", "infer_images_per_s")}
        )
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


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, gather the jobs into one table."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_summary(Path(config.hydra.sweep.dir))
        if path is not None:
            print(f"Sweep summary: {path}\n{path.read_text()}")
