"""Write docs/zoo.md: every backbone the zoo registers, with its size, cost and CPU speed.

    python -m zoo.table                      # all models, writes docs/zoo.md
    python -m zoo.table --pattern 'hornet*'  # a subset, printed only

Parameters are counted on the model as registered (1000-class head); GMACs are torch's
FlopCounterMode total / 2 at the model's default input size; images/s are measured on this
machine's CPU at the stated batch and size, after one warm-up iteration.
"""

import argparse
import fnmatch
import platform
import time
from pathlib import Path

import timm
import torch
from timm.models import _registry
from torch.utils.flop_counter import FlopCounterMode

import zoo

ROOT = Path(__file__).resolve().parents[1]

# Why a model trains more than 3x slower than a timm model of similar GMACs (issue 15); the
# profiles and before/after ratios behind them are in docs/benchmarks.md
_RESTORATION = (
    "image to image at full resolution: its GMACs are at the 64x64 input it is timed at, while a "
    "classifier's are at 224 px and it does about 1/12 of them at 64 px; per MAC it is not slow"
)
_FADC = (
    "FADC: torchvision's CPU deformable convolution (bilinear im2col, no oneDNN kernel) and "
    "FreqSelect's three FFT bands per layer; AdaKern no longer builds per-sample kernels (2.3x)"
)
_RAFT = (
    "the raft MLPs run on the grid they were built for (56/28/14/7 at 224 px) whatever the "
    "input: at 64 px the token mixing does 224 px's work (the paper's resampling)"
)
_DCLS = (
    "a 17x17 depthwise convolution: its CPU backward costs per tap (the window is cropped to the "
    "map on small inputs)"
)
SPEED_NOTES = {
    "cfsr": _RESTORATION,
    "dncnn": _RESTORATION,
    "dncnn_b": _RESTORATION,
    "mirnet": _RESTORATION,
    "mirnet_tiny": _RESTORATION,
    "mixer_body": _RESTORATION,
    "ninformer": "its default input is 32x32: at 64 px it does 4x the GMACs listed",
    "resnet50_fadc": _FADC,
    "metaformer_s12_fadc": _FADC,
    "raftmlp_s": _RAFT,
    "metaformer_s12_raft": _RAFT,
    "convnext_tiny_dcls": _DCLS,
    "metaformer_s12_dcls": _DCLS,
    "glnet_9g": "depthwise convs in every block (position 3x3, MLP 3x3, GLMix 5x5), whose CPU "
    "backward dominates a step, and global attention blocks in stage 3",
    "glnet_16g": "as glnet_9g, wider",
}


def zoo_models() -> list[tuple[str, str]]:
    """(model name, backbone module) for every model the zoo registers."""
    modules = {name for name in zoo.backbones.__dict__ if not name.startswith("_")}
    return sorted(
        (name, _registry._model_to_module[name])
        for name in timm.list_models()
        if _registry._model_to_module.get(name) in modules
    )


def config_models() -> list[tuple[str, str]]:
    """(model name, "timm") for timm's own models that conf/backbone/*.yaml select."""
    names = set()
    for path in (ROOT / "conf" / "backbone").glob("*.yaml"):
        for line in path.read_text().splitlines():
            if line.startswith("name:"):
                names.add(line.split(":", 1)[1].strip())
    return sorted(
        (n, "timm")
        for n in names
        if timm.is_model(n) and _registry._model_to_module[n] not in zoo.backbones.__dict__
    )


def measure(name: str, batch: int, size: int, iters: int) -> dict:
    model = timm.create_model(name)
    params = sum(p.numel() for p in model.parameters())
    channels, height, width = model.pretrained_cfg["input_size"]
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, channels, height, width))
    gmacs = counter.get_total_flops() / 2 / 1e9
    x = torch.randn(batch, channels, size, size * width // height)
    try:
        with torch.no_grad():
            model(x[:1])
    except (AssertionError, RuntimeError, ValueError):
        # fixed-size models (ConViT, CrossViT's patch grids) run at their own input size only
        x = torch.randn(batch, channels, height, width)

    def rate(step) -> float:
        step()  # warm-up: allocation, kernel selection
        start = time.perf_counter()
        for _ in range(iters):
            step()
        return batch * iters / (time.perf_counter() - start)

    with torch.no_grad():
        infer = rate(lambda: model(x))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(x).logsumexp(1).mean().backward()
        optimizer.step()

    return {"params_m": params / 1e6, "gmacs": gmacs, "input": f"{height}x{width}",
            "speed_input": f"{x.shape[2]}x{x.shape[3]}", "infer": infer,
            "train": rate(train_step)}  # fmt: skip


def _family_link(family: str) -> str:
    return "timm's own" if family == "timm" else f"[{family}](../zoo/backbones/{family}.py)"


def speed_notes(models) -> str:
    """The section naming why the listed models train slowly, for those that are in `models`."""
    notes = [f"- `{m}`: {SPEED_NOTES[m]}.\n" for m in models if m in SPEED_NOTES]
    if not notes:
        return ""
    return (
        "\n## Slower than a timm model of similar GMACs\n\n"
        "Zoo models whose training images/s are more than 3x below the timm model of this table "
        "nearest in GMACs, and why:\n\n" + "".join(notes)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pattern", default="*", help="fnmatch pattern on model names")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="throughput input side")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo.md")
    args = parser.parse_args()

    rows = []
    candidates = zoo_models() + config_models()
    models = [(n, m) for n, m in candidates if fnmatch.fnmatch(n, args.pattern)]
    for i, (name, module) in enumerate(models, 1):
        print(f"[{i}/{len(models)}] {name}", flush=True)
        rows.append(
            {"model": name, "family": module, **measure(name, args.batch, args.size, args.iters)}
        )

    header = (
        "| model | family | params (M) | GMACs | input | CPU infer img/s | CPU train img/s | at |\n"
        "|---|---|---:|---:|---|---:|---:|---|\n"
    )
    body = "".join(
        f"| `{r['model']}` | {_family_link(r['family'])} | {r['params_m']:.2f} "
        f"| {r['gmacs']:.2f} | {r['input']} | {r['infer']:.1f} | {r['train']:.1f} "
        f"| {r['speed_input']} |\n"
        for r in rows
    )
    text = (
        "# The zoo\n\nWritten by `python -m zoo.table`. Every backbone the zoo registers in timm, and "
        "timm's own models that a conf/backbone config selects.\n\n"
        "- **params**: counted on the registered model (1000-class head, as in the papers' tables; "
        "each family's test checks them against its paper's table).\n"
        "- **GMACs**: torch's `FlopCounterMode` FLOPs / 2, one image at the default input size.\n"
        f"- **img/s**: this machine's CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}), batch {args.batch} at "
        f"{args.size}px on the short side (`at`: fixed-size models run at their own input), mean "
        f"of {args.iters} iterations after one warm-up; "
        "train = forward + backward + SGD step. Compare within this table only.\n\n"
        + header
        + body
        + speed_notes(r["model"] for r in rows)
    )
    if args.pattern == "*":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(header + body)


if __name__ == "__main__":
    main()
