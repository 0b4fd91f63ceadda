"""The papers' speed claims, measured side by side in one process on this machine.

    python -m benchmarks.bench_paper_claims [--img-size 224] [--batch-size 8] [--repeats 5]
        [--threads N] [--only inception_next] [--json results.json]

Each claim compares two models (or one model in two forms) on the same input. Their steps are
timed in alternation, A B A B ..., so that a load that comes and goes on a shared machine hits
both alike; the ratio is taken per repetition and reported as its median and range:

- InceptionNeXt-T vs ConvNeXt-T, training and inference (the InceptionNeXt abstract: 1.6x the
  training throughput, on an A100);
- UniRepLKNet-A before vs after structural re-parameterisation, inference (the operation
  `benchmarks/bench_reparam.py` times alone);
- CAS-ViT and AFFNet vs the ConvNeXt of timm's small variants nearest in GMACs, training and
  inference (both papers present their token mixers as efficient on mobile and GPU devices).

Training is forward, cross-entropy, backward and an AdamW step; inference is an eval-mode forward
under `torch.inference_mode`. A benchmark, not a test: the numbers depend on the machine and load.
"""

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.utils.model import reparameterize_model
from torch.utils.flop_counter import FlopCounterMode

import zoo  # noqa: F401  (registers the models)


@dataclass(frozen=True)
class Claim:
    """Model `fast` against model `baseline`; `claimed` is the paper's ratio, if it gives one."""

    name: str
    fast: str
    baseline: str
    modes: tuple[str, ...]
    claimed: str
    reparameterized: bool = False  # `fast` is `baseline` after reparameterize_model


CLAIMS = (
    Claim("inception_next", "inception_next_tiny", "convnext_tiny", ("train", "infer"),
          "1.6x training (A100)"),
    Claim("unireplknet_reparam", "unireplknet_a", "unireplknet_a", ("infer",),
          "faster after re-parameterisation", reparameterized=True),
    Claim("cas_vit_xs", "cas_vit_xs", "convnext_atto", ("train", "infer"), "efficient"),
    Claim("cas_vit_s", "cas_vit_s", "convnext_femto", ("train", "infer"), "efficient"),
    Claim("affnet_t", "affnet_t", "convnext_femto", ("train", "infer"), "efficient"),
    Claim("affnet", "affnet", "convnext_pico", ("train", "infer"), "efficient"),
)  # fmt: skip


def gmacs(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one eval-mode forward of one image, in billions."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    return counter.get_total_flops() / 2 / 1e9


def step_function(model: torch.nn.Module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    """One training step or one inference forward of `model` on the batch `x`."""
    if mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                model(x)

        return infer
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())
    target = torch.zeros(x.shape[0], dtype=torch.long)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        optimizer.step()

    return train


def interleaved_rates(
    steps: dict[str, Callable[[], None]], batch: int, repeats: int
) -> dict[str, list[float]]:
    """Images/s of each step per repetition; the steps alternate, after one warm-up each."""
    for step in steps.values():
        step()
    rates = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            rates[name].append(batch / (time.perf_counter() - start))
    return rates


def measure(claim: Claim, x: torch.Tensor, repeats: int) -> list[dict]:
    """One row per mode: both models' median images/s and the per-repetition ratio."""
    torch.manual_seed(0)
    baseline = timm.create_model(claim.baseline, num_classes=10)
    if claim.reparameterized:
        fast = reparameterize_model(copy.deepcopy(baseline).eval())
    else:
        fast = timm.create_model(claim.fast, num_classes=10)
    macs = {"fast": gmacs(fast, x), "baseline": gmacs(baseline, x)}
    rows = []
    for mode in claim.modes:
        steps = {"fast": step_function(fast, x, mode), "baseline": step_function(baseline, x, mode)}
        rates = interleaved_rates(steps, x.shape[0], repeats)
        ratios = [f / b for f, b in zip(rates["fast"], rates["baseline"], strict=True)]
        rows.append({
            "claim": claim.name, "mode": mode, "claimed": claim.claimed,
            "fast": claim.fast + (" (reparameterized)" if claim.reparameterized else ""),
            "baseline": claim.baseline,
            "fast_gmacs": macs["fast"], "baseline_gmacs": macs["baseline"],
            "fast_img_s": statistics.median(rates["fast"]),
            "baseline_img_s": statistics.median(rates["baseline"]),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "holds": statistics.median(ratios) > 1,
        })  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| claim | mode | model (GMACs) | baseline (GMACs) | img/s | baseline img/s "
        "| ratio, median (range) | faster here? |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['claimed']} | {r['mode']} | `{r['fast']}` ({r['fast_gmacs']:.2f}) "
            f"| `{r['baseline']}` ({r['baseline_gmacs']:.2f}) | {r['fast_img_s']:.1f} "
            f"| {r['baseline_img_s']:.1f} | {r['ratio']:.2f}x ({r['ratio_min']:.2f}-"
            f"{r['ratio_max']:.2f}) | {'yes' if r['holds'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--only", nargs="*", help="claim names to run (default: all)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = set(args.only or ()) - {c.name for c in CLAIMS}
    if unknown:
        parser.error(f"unknown claims {sorted(unknown)}; choose from {[c.name for c in CLAIMS]}")

    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    rows = []
    for claim in CLAIMS:
        if args.only and claim.name not in args.only:
            continue
        rows.extend(measure(claim, x, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{torch.get_num_threads()} CPU threads, batch {args.batch_size} x "
        f"{args.img_size}x{args.img_size}, {args.repeats} interleaved repetitions\n"
    )
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
