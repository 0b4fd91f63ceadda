"""Time of a long convolution against sequence length: direct, torch.fft and Monarch (matmul) FFT.

    .venv/bin/python benchmarks/bench_volatility.py [--lengths 1024 ... 65536] [--channels 8]
        [--direct-max 16384] [--repeats 3] [--threads N] [--device cpu|cuda] [--out PNG]

A depthwise causal convolution of a (1, channels, N) sequence with an N-tap kernel (a long
convolution: the kernel as long as the sequence), three ways (zoo/operators/seq_fftconv.py):
`direct_conv` (F.conv1d, O(N^2)), `fft_conv` (torch.fft, O(N log N)) and `monarch_fft_conv`
(FlashFFTConv's decomposition of the FFT into radix-16 matmuls, O(N log N)). The direct one stops
at `--direct-max` (it is quadratic). Prints a table, each method's log-log slope and its time over
N log2 N (flat for an N log N method), and draws the plot. A benchmark, not a test: numbers
depend on the machine and its load.
"""

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

# run as a file, the script sees benchmarks/ and not the repository root where `zoo` lives
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.operators.seq_fftconv import direct_conv, fft_conv, monarch_fft_conv  # noqa: E402

METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "direct (conv1d)": direct_conv,
    "torch.fft": fft_conv,
    "monarch matmul FFT": monarch_fft_conv,
}


def seconds(fn: Callable[[], torch.Tensor], repeats: int, device: str) -> float:
    """Median wall time of `fn` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2**k for k in range(10, 17)])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--direct-max", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/fftconv_timing.png"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict[str, list[tuple[int, float]]] = {name: [] for name in METHODS}
    print(f"{'N':>7} " + " ".join(f"{name:>20}" for name in METHODS))
    for n in args.lengths:
        x = torch.randn(1, args.channels, n, device=args.device)
        kernel = torch.randn(args.channels, n, device=args.device) / math.sqrt(n)
        row = []
        for name, conv in METHODS.items():
            if name.startswith("direct") and n > args.direct_max:
                row.append(float("nan"))
                continue
            t = seconds(partial(conv, x, kernel, True), args.repeats, args.device)
            results[name].append((n, t))
            row.append(t)
        print(f"{n:>7} " + " ".join(f"{t * 1e3:>18.2f}ms" for t in row))
    print(
        "\nlog-log slope (1: linear, 2: quadratic) and time / (N log2 N) from the first to the last N:"
    )
    for name, points in results.items():
        n, t = np.array(points).T
        slope = np.polyfit(np.log(n), np.log(t), 1)[0]
        per = t / (n * np.log2(n))
        print(f"  {name:>20}: slope {slope:.2f}, t/(N log N) {per[0]:.2e} -> {per[-1]:.2e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4))
    for name, points in results.items():
        n, t = np.array(points).T
        ax.loglog(n, t * 1e3, "o-", label=name)
    n = np.array(args.lengths, dtype=float)
    anchor = np.array(results["torch.fft"])[0]
    ax.loglog(
        n,
        anchor[1] * 1e3 * n * np.log2(n) / (anchor[0] * np.log2(anchor[0])),
        "k:",
        label="N log N",
    )
    ax.set_xlabel("sequence length N (kernel of N taps)")
    ax.set_ylabel("ms per convolution")
    ax.set_title(f"Long convolution, {args.channels} channels, {args.device}")
    ax.legend()
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
