"""Frozen spatial backbone + adapter against full fine-tuning, at the same budget.

    .venv/bin/python benchmarks/bench_frozen_adapter.py [--backbone inceptionnext]
        [--epochs 4] [--checkpoint RUN.ckpt] [--pretrain-epochs 4] [--out DIR] [-- overrides...]

The recipe of "Optimizing ViViT Training" (Russo et al., arXiv 2306.04822): freeze the spatial
backbone, train a compact adapter and the temporal model. Both variants start from the same
spatial weights (`--checkpoint`, or a frame-only run of `--pretrain-epochs` made first, since no
pretrained weights can be fetched offline) and train the same temporal model (TCN) for the same
number of epochs. Each runs `train.py task=surgical_video` in its own process, so that its peak
resident memory (`ru_maxrss` of that process alone) is its own; training time is the fit's
wall time and train clips/s from results.json. Prints a markdown table: trainable parameters,
training seconds, clips/s, peak memory, test accuracy. A benchmark, not a test: the numbers
depend on the machine and its load.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, overrides: list[str], out: Path) -> dict:
    """`train.py task=surgical_video <overrides>` in a child process; its results and costs."""
    folder = out / name
    command = [sys.executable, str(ROOT / "train.py"), "task=surgical_video", "logger=none",
               f"hydra.run.dir={folder}", *overrides]  # fmt: skip
    started = time.perf_counter()
    with (out / f"{name}.log").open("w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{name} failed; see {out / f'{name}.log'}")
    results = json.loads((folder / "results.json").read_text())
    results["process_seconds"] = time.perf_counter() - started
    results["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="inceptionnext", help="a conf/backbone config")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of both variants")
    parser.add_argument("--checkpoint", default=None, help="spatial weights both start from")
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "logs" / "bench_frozen_adapter"))
    parser.add_argument("overrides", nargs="*", help="more train.py overrides for every run")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [f"backbone={args.backbone}", "trainer.max_time=null", *args.overrides]

    checkpoint = args.checkpoint
    if checkpoint is None:
        pretrain = run("pretrain_frame_only", [*common, "task.temporal=none",
                                               f"trainer.max_epochs={args.pretrain_epochs}"], out)  # fmt: skip
        checkpoint = pretrain["best_checkpoint"]
    budget = [*common, "task.temporal=tcn", f"trainer.max_epochs={args.epochs}",
              f"task.backbone_checkpoint={checkpoint}"]  # fmt: skip
    rows = {
        "full fine-tuning": run("full", [*budget, "task.freeze_backbone=false"], out),
        "frozen + adapter": run("frozen", [*budget, "task.freeze_backbone=true"], out),
    }
    print(f"\n{args.backbone}, TCN, {args.epochs} epochs from {checkpoint}\n")
    print("| recipe | trainable params | training s | train clips/s | peak RSS MB | test/acc |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['trainable_params'] / 1e6:.2f}M | {r['wall_seconds']:.0f} | "
              f"{r['train_images_per_s'] or 0:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['metrics']['test/acc']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
