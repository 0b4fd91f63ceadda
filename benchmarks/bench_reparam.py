"""Inference speed of a UniRepLKNet before and after structural re-parameterization.

    .venv/bin/python benchmarks/bench_reparam.py [--model unireplknet_a] [--batch-size 8]
        [--img-size 224] [--iters 20] [--warmup 5] [--threads N] [--device cpu|cuda]

Builds the model with its training-time structure (Dilated Reparam Blocks with their dilated
branches, BatchNorms), times eval-mode forwards, converts it with
`timm.utils.model.reparameterize_model`, checks that the outputs agree, times it again and prints
both timings and the speed-up. A benchmark, not a test: numbers depend on the machine and load.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from timm.utils.model import reparameterize_model

# run as a file, the script sees benchmarks/ and not the repository root where `zoo` lives
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zoo  # noqa: E402, F401  (registers the models)


def time_forward(
    model: torch.nn.Module, x: torch.Tensor, iters: int, warmup: int
) -> tuple[float, float]:
    """Median and min seconds per forward over `iters` timed runs after `warmup` untimed ones."""
    synchronize = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        synchronize()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            model(x)
            synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="unireplknet_a")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = timm.create_model(args.model).to(args.device).eval()
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=args.device)
    params_before = sum(p.numel() for p in model.parameters())
    median_before, min_before = time_forward(model, x, args.iters, args.warmup)

    deployed = reparameterize_model(model)
    params_after = sum(p.numel() for p in deployed.parameters())
    with torch.inference_mode():
        max_diff = (model(x) - deployed(x)).abs().max().item()
    median_after, min_after = time_forward(deployed, x, args.iters, args.warmup)

    print(
        f"{args.model} on {args.device} ({torch.get_num_threads()} CPU threads), "
        f"batch {args.batch_size} x {args.img_size}x{args.img_size}, {args.iters} timed runs"
    )
    print(
        f"  training structure:  {params_before / 1e6:6.2f}M params, "
        f"{median_before * 1e3:8.1f} ms median, {min_before * 1e3:8.1f} ms min per batch"
    )
    print(
        f"  reparameterized:     {params_after / 1e6:6.2f}M params, "
        f"{median_after * 1e3:8.1f} ms median, {min_after * 1e3:8.1f} ms min per batch"
    )
    print(f"  max |output difference|: {max_diff:.2e}")
    print(f"  speed-up (median before / after): {median_before / median_after:.2f}x")


if __name__ == "__main__":
    main()
