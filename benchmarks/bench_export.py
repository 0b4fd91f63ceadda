"""Eager PyTorch against ONNX Runtime: the latency of exported classifiers on this CPU.

    .venv/bin/python benchmarks/bench_export.py [--models inception_next_atto unireplknet_a ...]
        [--img-size 224] [--batch-size 1] [--iters 20] [--threads 1]

Each model (10 classes) is re-parameterised and exported the way `mode=export` exports it
(tasks/export.py: torch.export, then ONNX), checked for parity, then timed eagerly (no grad) and
in ONNX Runtime on the same input, with the same number of threads. Prints one JSON line per
model: median milliseconds per batch of each, and their ratio. A benchmark, not a test: numbers
depend on the machine and its load.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import timm
import torch

# run as a file, the script sees benchmarks/ and not the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zoo  # noqa: E402, F401  (registers the models)
from tasks.export import export_network  # noqa: E402

MODELS = ("inception_next_atto", "convnext_atto", "unireplknet_a", "hornet_tiny_7x7",
          "cas_vit_xs", "osnet_x0_25")  # fmt: skip


def median_seconds(run: Callable[[], object], iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import onnxruntime

    torch.set_num_threads(args.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    for name in args.models:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=10).eval()
        x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
        with tempfile.TemporaryDirectory() as folder:
            record = export_network(model, (x,), Path(folder), ["image"], ["logits"])
            if "error" in record["onnx"]:
                print(json.dumps({"model": name, "onnx": record["onnx"]}))
                continue
            session = onnxruntime.InferenceSession(str(Path(folder) / "model.onnx"), options,
                                                   providers=["CPUExecutionProvider"])  # fmt: skip
        eager_model = timm.utils.reparameterize_model(model)
        with torch.no_grad():
            eager = median_seconds(partial(eager_model, x), args.iters)
        feed = {"image": x.numpy()}
        ort = median_seconds(partial(session.run, None, feed), args.iters)
        print(json.dumps({
            "model": name, "input": list(x.shape), "threads": args.threads,
            "eager_ms": round(1000 * eager, 2), "onnxruntime_ms": round(1000 * ort, 2),
            "eager_over_onnxruntime": round(eager / ort, 2),
            "parity_relative": record["onnx"]["parity"]["relative_difference"],
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
