"""The efficiency gap: GMACs against measured images/s for every zoo backbone, coloured by the
GFLOP/s each one achieves.

    python -m benchmarks.efficiency_gap [--models 'metaformer_s12_*'] [--out docs/efficiency_gap.png]

After `On the Efficiency of Convolutional Neural Networks` (abstract in ../shared/papers): latency is
operations divided by computational efficiency, so two models of equal GMACs can differ tenfold
in speed. The images/s are read from docs/zoo.md (written by `python -m zoo.table`, which
measures them; rerun that first to refresh them), so this command measures no speed itself. It
does count each model's FLOPs again, at the input size zoo.md timed it at (64 px, not the
default input the GMACs column is for), so that the achieved rate is FLOPs actually done per
second: inference 2 x MACs x images/s; training counts backward as twice the forward, 6 x MACs x
images/s. The x axis keeps the GMACs at each model's default input, as the papers tabulate them.
"""

import argparse
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, never a window
import matplotlib.pyplot as plt  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import zoo  # noqa: E402, F401  (registers the models)

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"^\| `(?P<model>[^`]+)` \| (?P<family>[^|]+) \| [\d.]+ \| (?P<gmacs>[\d.]+) \| [^|]+ "
    r"\| (?P<infer>[\d.]+) \| (?P<train>[\d.]+) \| (?P<at>\d+)x(?P<at_w>\d+) \|$"
)


@dataclass(frozen=True)
class Measured:
    """One row of docs/zoo.md, with the GMACs counted at the size its speed was measured at."""

    model: str
    timm_own: bool
    gmacs: float  # at the model's default input
    infer: float  # images/s
    train: float  # images/s
    speed_gmacs: float  # at the measured input

    @property
    def infer_gflops(self) -> float:
        return 2 * self.speed_gmacs * self.infer

    @property
    def train_gflops(self) -> float:
        return 6 * self.speed_gmacs * self.train


def read_table(path: Path, pattern: str) -> list[dict]:
    """The rows of zoo.md's table whose model name matches the fnmatch `pattern`."""
    rows = [m.groupdict() for m in map(ROW.match, path.read_text().splitlines()) if m]
    if not rows:
        raise SystemExit(f"no model table found in {path}; run `python -m zoo.table` first")
    return [r for r in rows if fnmatch.fnmatch(r["model"], pattern)]


def _count_gmacs(model_name: str, height: int, width: int, device: str) -> float:
    model = timm.create_model(model_name, device=device).eval()
    in_chans = model.pretrained_cfg["input_size"][0]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, in_chans, height, width, device=device))
    return counter.get_total_flops() / 2 / 1e9


def gmacs_at(model_name: str, height: int, width: int) -> float:
    """MACs of one image of `height` x `width` through the model, in billions.

    Counted on the meta device, where nothing is computed; a model with an operator that has
    no meta kernel (deformable convolution) is counted on the CPU instead.
    """
    try:
        return _count_gmacs(model_name, height, width, "meta")
    except (NotImplementedError, RuntimeError):
        return _count_gmacs(model_name, height, width, "cpu")


def measured(row: dict) -> Measured:
    return Measured(
        model=row["model"],
        timm_own=row["family"].strip() == "timm's own",
        gmacs=float(row["gmacs"]),
        infer=float(row["infer"]),
        train=float(row["train"]),
        speed_gmacs=gmacs_at(row["model"], int(row["at"]), int(row["at_w"])),
    )


def plot(models: list[Measured], out: Path, labels: int) -> None:
    """Two panels, inference and training; the `labels` least and most efficient are named."""
    figure, axes = plt.subplots(1, 2, figsize=(14, 6), constrained_layout=True)
    for ax, mode in zip(axes, ("infer", "train"), strict=True):
        rate = [getattr(m, f"{mode}_gflops") for m in models]
        speed = [getattr(m, mode) for m in models]
        norm = LogNorm(vmin=min(rate), vmax=max(rate))
        for timm_own, marker in ((False, "o"), (True, "s")):
            picked = [i for i, m in enumerate(models) if m.timm_own == timm_own]
            points = ax.scatter(
                [models[i].gmacs for i in picked],
                [speed[i] for i in picked],
                c=[rate[i] for i in picked],
                norm=norm,
                cmap="viridis",
                marker=marker,
                edgecolors="black",
                linewidths=0.4,
                label="timm's own" if timm_own else "the zoo's",
            )
        order = sorted(range(len(models)), key=rate.__getitem__)
        for i in order[:labels] + order[-labels:]:
            ax.annotate(models[i].model, (models[i].gmacs, speed[i]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="GMACs (one image, default input)",
               ylabel=f"CPU {'inference' if mode == 'infer' else 'training'} images/s (docs/zoo.md)",
               title=f"{'Inference' if mode == 'infer' else 'Training'}: equal GMACs, unequal speed")  # fmt: skip
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower left")
        figure.colorbar(points, ax=ax, label="achieved GFLOP/s")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Reads the images/s of docs/zoo.md; counts FLOPs again; writes a PNG.",
    )
    parser.add_argument("--models", default="*", help="fnmatch pattern on model names")
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "zoo.md")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "efficiency_gap.png")
    parser.add_argument("--labels", type=int, default=6, help="name this many at each end")
    args = parser.parse_args()

    rows = read_table(args.table, args.models)
    if not rows:
        raise SystemExit(f"no model of {args.table} matches {args.models!r}")
    models = []
    for i, row in enumerate(rows, 1):
        print(f"[{i}/{len(rows)}] {row['model']}", flush=True)
        models.append(measured(row))
    plot(models, args.out, args.labels)
    print("\n| model | GMACs | infer img/s | infer GFLOP/s | train img/s | train GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in sorted(models, key=lambda m: m.infer_gflops):
        print(f"| `{m.model}` | {m.gmacs:.2f} | {m.infer:.1f} | {m.infer_gflops:.1f} "
              f"| {m.train:.1f} | {m.train_gflops:.1f} |")  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
