"""A dashboard that needs no account: `python -m tasks.report DIR`.

DIR is a sweep dir, or `logs/` for every run. Every completed results.json under it becomes a
point: per task, the main metric against params, GMACs and inference images/s with the Pareto
front marked (the runs no other run beats on both axes), and one backbone x task heat map of
main metrics. All of it lands in `DIR/report/`, with a report.md that embeds the pictures.
"""

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .results import RESULTS_FILE  # noqa: E402

#: (results.json key, axis label, whether lower is better)
COST_AXES = (
    ("params_m", "parameters (M)", True),
    ("gmacs", "GMACs per image", True),
    ("infer_images_per_s", "inference images/s", False),
)


def load_runs(folder: Path) -> list[dict[str, Any]]:
    """Every completed run under `folder` with a main metric, as its results.json dict."""
    runs = []
    for path in sorted(folder.rglob(RESULTS_FILE)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a file being written, or not ours: a report never fails on one
        value = record.get("metrics", {}).get(record.get("main_metric"))
        if record.get("status", "completed") == "completed" and value is not None:
            runs.append(record | {"path": str(path.parent), "main_value": float(value)})
    return runs


def pareto_front(costs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats: lower-or-equal cost and higher-or-equal score,
    one of them strictly. Costs and scores are already oriented (lower cost, higher score)."""
    front = []
    for i in range(len(costs)):
        dominated = np.any(
            (costs <= costs[i])
            & (scores >= scores[i])
            & ((costs < costs[i]) | (scores > scores[i]))
        )
        if not dominated:
            front.append(i)
    return np.array(sorted(front, key=lambda i: costs[i]), dtype=int)


def run_label(run: dict[str, Any]) -> str:
    """The backbone config, with the token mixer of the operator grid when one was chosen."""
    label = run["choices"]["backbone"]
    mixer = next(
        (o.split("=", 1)[1] for o in run.get("overrides", []) if o.startswith("backbone.mixer=")),
        None,
    )
    return f"{label}:{mixer}" if mixer else label


def best_per_backbone(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One run per backbone config (and grid mixer): the best by the task's main metric."""
    best: dict[str, dict[str, Any]] = {}
    for run in runs:
        name = run_label(run)
        sign = 1 if run.get("main_metric_mode", "max") == "max" else -1
        if name not in best or sign * run["main_value"] > sign * best[name]["main_value"]:
            best[name] = run
    return best


def plot_task(task: str, runs: list[dict[str, Any]], folder: Path) -> Path:
    """Main metric against each cost axis, Pareto front drawn, one point per backbone."""
    best = list(best_per_backbone(runs).values())
    metric, mode = best[0]["main_metric"], best[0].get("main_metric_mode", "max")
    figure, axes = plt.subplots(1, len(COST_AXES), figsize=(5 * len(COST_AXES), 4.2))
    for ax, (key, label, lower_is_better) in zip(axes, COST_AXES):
        points = [(r[key], r["main_value"], run_label(r)) for r in best if r.get(key)]
        if not points:
            ax.set_axis_off()
            ax.set_title(f"no {label} recorded")
            continue
        x, y, names = (np.array(v) if i < 2 else v for i, v in enumerate(zip(*points)))
        cost = x if lower_is_better else -x
        score = y if mode == "max" else -y
        front = pareto_front(cost, score)
        ax.scatter(x, y, color="tab:blue", zorder=2)
        ax.plot(x[front], y[front], "-o", color="tab:red", zorder=3, label="Pareto front")
        for xi, yi, name in zip(x, y, names):
            ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if x.min() > 0 and x.max() / x.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(label + (" (lower is better)" if lower_is_better else " (higher is better)"))
        ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))  # long GMAC labels must not overlap
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"{task}: {len(best)} backbones")
    figure.tight_layout()
    path = folder / f"{task}_pareto.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_heatmap(by_task: dict[str, list[dict[str, Any]]], folder: Path) -> Path:
    """Backbone x task main metrics. Colour is the rank within each task's column (tasks'
    metrics have different units and directions); the cell text is the value itself."""
    tasks = sorted(by_task)
    backbones = sorted({run_label(r) for runs in by_task.values() for r in runs})
    values = np.full((len(backbones), len(tasks)), np.nan)
    colour = np.full_like(values, np.nan)
    for j, task in enumerate(tasks):
        best = best_per_backbone(by_task[task])
        for i, name in enumerate(backbones):
            if name in best:
                values[i, j] = best[name]["main_value"]
        column = values[:, j]
        present = ~np.isnan(column)
        sign = 1 if next(iter(best.values())).get("main_metric_mode", "max") == "max" else -1
        ranks = np.argsort(np.argsort(sign * column[present]))
        colour[present, j] = ranks / max(1, present.sum() - 1)
    figure, ax = plt.subplots(figsize=(1.6 * len(tasks) + 3, 0.35 * len(backbones) + 1.5))
    ax.imshow(np.ma.masked_invalid(colour), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(backbones)):
        for j in range(len(tasks)):
            if not math.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=8)
    metrics = [by_task[t][0]["main_metric"] for t in tasks]
    ax.set_xticks(range(len(tasks)), [f"{t}\n{m}" for t, m in zip(tasks, metrics)], fontsize=8)
    ax.set_yticks(range(len(backbones)), backbones, fontsize=8)
    ax.set_title("main metric per backbone and task\n(colour: rank within the task, green best)")
    figure.tight_layout()
    path = folder / "heatmap.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def markdown_table(runs: list[dict[str, Any]]) -> list[str]:
    best = sorted(
        best_per_backbone(runs).values(),
        key=lambda r: (
            -r["main_value"] if r.get("main_metric_mode", "max") == "max" else r["main_value"]
        ),
    )
    metric = best[0]["main_metric"]
    lines = [f"| backbone | model | {metric} | params (M) | GMACs | infer img/s | run |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in best:
        cells = [run_label(r), r["choices"].get("model", ""), f"{r['main_value']:.4g}"]
        cells += [f"{r[k]:.3g}" if r.get(k) is not None else "" for k, _, _ in COST_AXES]
        lines.append("| " + " | ".join([*cells, f"`{r['path']}`"]) + " |")
    return lines


def write_report(folder: Path) -> Path:
    """Write `folder/report/` (pictures and report.md) from the runs under `folder`."""
    runs = load_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no completed {RESULTS_FILE} under {folder}: nothing to report")
    out = folder / "report"
    out.mkdir(exist_ok=True)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_task[run["choices"]["task"]].append(run)
    lines = [
        f"# Report: {folder}",
        "",
        f"{len(runs)} completed runs over {len(by_task)} tasks.",
        "",
    ]
    heatmap = plot_heatmap(by_task, out)
    lines += ["## Backbone x task", "", f"![heat map]({heatmap.name})", ""]
    for task in sorted(by_task):
        picture = plot_task(task, by_task[task], out)
        lines += [f"## {task}", "", f"![{task}]({picture.name})", "", *markdown_table(by_task[task]), ""]  # fmt: skip
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep dir, or logs/ for every run")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    print(f"report: {write_report(args.folder)}")


if __name__ == "__main__":
    main()
