"""Training speed of a model with an operator file as it is now against the same file at a git revision.

    python -m benchmarks.bench_before_after --model resnet50_fadc --file zoo/operators/fadc.py \
        --rev HEAD~1 [--size 32] [--batch-size 64] [--repeats 5] [--threads 1]

One process, one model, one set of weights: every module of the model whose class the file
defines has its `forward` swapped between the old file's and the current one's, and the two
versions' training steps (forward, cross-entropy, backward, AdamW step) alternate, so that a load
that comes and goes on a shared machine hits both alike. The old version's output is checked
against the current one's first. Prints the images/s of each repetition and their ratio.
A benchmark, not a test: the numbers depend on the machine and its load.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import zoo  # noqa: E402, F401  (registers the models)


def load_old_module(path: str, rev: str, current_name: str) -> types.ModuleType:
    """The file as it was at `rev`, imported under a private name in the current package."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    package = current_name.rpartition(".")[0]
    spec = importlib.util.spec_from_loader(f"{package}._old_{rev.replace('~', '_')}", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package  # its relative imports resolve to the current package
    # the old file registers its token mixers again under the same names: into a throwaway table
    registry = importlib.import_module(f"{package}.registry")
    table = registry._TOKEN_MIXERS
    registry._TOKEN_MIXERS = {}
    try:
        exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    finally:
        registry._TOKEN_MIXERS = table
    return module


def forwards(model: torch.nn.Module, current: types.ModuleType, old: types.ModuleType):
    """(module, current forward, old forward) for every module of a class the file defines."""
    swaps = []
    for module in model.modules():
        cls = type(module)
        for klass in cls.__mro__:
            if klass.__module__ == current.__name__ and hasattr(old, klass.__name__):
                old_forward = getattr(old, klass.__name__).forward
                swaps.append((module, module.forward, types.MethodType(old_forward, module)))
                break
    return swaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--file", required=True, help="the operator file, e.g. zoo/operators/fadc.py"
    )
    parser.add_argument("--rev", default="HEAD~1", help="git revision of the old file")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    module_name = args.file.removesuffix(".py").replace("/", ".")
    current = importlib.import_module(module_name)
    old = load_old_module(args.file, args.rev, module_name)
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=10)
    swaps = forwards(model, current, old)
    if not swaps:
        raise SystemExit(f"no module of {args.model} has a class defined in {args.file}")
    optimizer = torch.optim.AdamW(model.parameters())
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch_size,))

    def use(version: int) -> None:
        for module, *versions in swaps:
            module.forward = versions[version]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    model.eval()
    with torch.no_grad():
        use(0)
        now = model(x[:4])
        use(1)
        before = model(x[:4])
    print(f"max |current - old| output: {(now - before).abs().max().item():.2e}")
    model.train()
    rates = {0: [], 1: []}
    for version in (0, 1):  # warm-up: allocation and kernel selection, untimed
        use(version)
        step()
    for _ in range(args.repeats):
        for version in (1, 0):
            use(version)
            start = time.perf_counter()
            step()
            rates[version].append(args.batch_size / (time.perf_counter() - start))
    ratios = [new / old_ for new, old_ in zip(rates[0], rates[1], strict=True)]
    print(
        f"{args.model}, {args.size} px, batch {args.batch_size}, {args.threads} thread(s), "
        f"{len(swaps)} modules of {args.file} swapped, {args.repeats} interleaved repetitions"
    )
    print(f"  {args.rev:>8}: " + " ".join(f"{r:.2f}" for r in rates[1]) + " img/s")
    print("   current: " + " ".join(f"{r:.2f}" for r in rates[0]) + " img/s")
    print(
        f"  speed-up (current / {args.rev}): median {statistics.median(ratios):.2f}x, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
