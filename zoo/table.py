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
    # Profiled at 64 px, batch 8, one thread. "Side by side": both models timed in one process, in
    # alternation, on the loaded machine (ranges over two runs). "The table timed its row under
    # load": in the table's one run the machine was loaded for that row and quiet for the timm
    # model's; timed today under load, those models run near their rows' figures while the timm
    # models run 2-3x below theirs, and metaformer_s12 and metaformer_s12_pooling, one network,
    # have rows of 23.0 and 55.7 img/s.
    "affnet_et": "1.1-1.2x inception_next_atto side by side (the table timed its row under load); "
    "AFF's mask network, four grouped (8-group) complex 1x1 convs a layer, is 27% of a step for "
    "5% of the MACs: at batch 8 on one thread ATen runs a grouped 1x1 conv as one slow_conv2d "
    "call per group (576 of its 615 a forward)",
    "affnet_t": "1.8-2.0x convnext_atto side by side (the table timed its row under load); AFF's "
    "grouped complex 1x1 convs (one slow_conv2d call per group at batch 8 on one thread) are 21% "
    "of a step for 5% of the MACs, and the MobileNetV2 blocks' BatchNorm and SiLU another 18%",
    "cas_vit_m": "1.8-2.0x poolformerv2_s12 side by side (the table timed its row under load), "
    "whose pooling is 1.3% of a step: CATM is 30%, five 3x3 depthwise convs a block (CATM's four, "
    "local integration's one) take 14% for 3% of the MACs, and a step runs 3x the forward ops",
    "cas_vit_t": "1.9x caformer_s18 side by side (the table timed its row under load): the last "
    "stage's 512-channel 1x1 convs on 2x2 maps are 37% of a step for 19% of the MACs, as ATen "
    "skips oneDNN for 1x1 convs on one thread below batch 16 and its per-sample GEMM then has 4 "
    "columns (1.7 against 11.4 GMAC/s as a Linear); caformer_s18's last stages use Linear",
    "favit_b0": "1.8-1.9x convnext_atto side by side (the table timed its row under load): FaSA "
    "runs up to three attentions a layer (a reduced global group, dilated-window groups of 49 "
    "pooled tokens), 37% of a step, and a step is 1354 forward ops and 2175 backward nodes "
    "against convnext_atto's 169 and 274, each small at 64 px",
    "favit_b1": "1.9-2.2x poolformerv2_s12 side by side (the table timed its row under load) for "
    "1.3x its GMACs: FaSA's three attentions a layer are 30% of a step and MixFFN's 3x3 depthwise "
    "conv (CPU backward 5x its forward) 7%, where poolformerv2_s12's pooling is 1.3%",
    "ffnet_2": "2.0x convformer_s18 side by side (the table timed its row under load) for 1.2x its "
    "MACs at 64 px: its 7x7 depthwise convs (three a block: channel mixer, key, value; and the "
    "downsamples') with their 3x3 re-param branches are 35% of a step for 7% of the MACs (CPU "
    "backward 5-7x forward), where convformer_s18 has one a block",
    "hornet_small_7x7": "1.75x convformer_s18 side by side (the table timed its row under load) "
    "for 2.2x its GMACs (8.8 against 3.9, no timm model of the table is nearer): per MAC it is "
    "faster; gnConv is 45% of a step, its 7x7 depthwise conv 21% (CPU backward 17x forward)",
    "metaformer_s12_aff": "1.5-1.6x poolformerv2_s12 side by side (the table timed its row under "
    "load), whose pooling is 1.3% of a step: AFF is 34% for 7.5% of the MACs, 24% in its grouped "
    "complex 1x1 convs (one slow_conv2d call per group at batch 8 on one thread: 768 of the 792 a "
    "forward) and about 5% in FFTs",
    "metaformer_s12_catm": "1.6x poolformerv2_s12 side by side (the table timed its row under "
    "load) for 1.35x its GMACs: CATM is 31% of a step against pooling's 1.3%, its qkv 1x1 conv "
    "14% and its four 3x3 depthwise convs 10%",
    "metaformer_s12_cfsr": "1.6x poolformerv2_s12 side by side (the table timed its row under "
    "load) for 1.4x its GMACs: the ConvMod mixer is 33% of a step against pooling's 1.3%, its 9x9 "
    "depthwise conv (edge kernel folded in every step) 16% for 3% of the MACs, its 1x1 convs 15%",
    "metaformer_s12_complex_conv": "1.45x poolformerv2_s12 side by side (the table timed its row "
    "under load): the complex 7x7 depthwise conv is four real depthwise convs, 27% of a step for "
    "5% of the MACs with a CPU backward 8-10x their forward, against pooling's 1.3%",
    "metaformer_s12_dilated_reparam": "the training form's 13x13 depthwise conv plus five "
    "dilated depthwise branches (7x7 d2, 5x5, 3x3 d3/d4/d5), each with a BatchNorm, is 65% of a "
    "step for 13% of the MACs against pooling's 1.3%: the dilated 7x7 alone 24%, the 13x13 15% "
    "with a CPU backward 18x its forward (3.2-3.3x poolformerv2_s12 side by side)",
    "metaformer_s12_svt_scatter": "the DTCWT's fixed 19-tap row and column filters (48 convs a "
    "step of one or two channels a group over batch x channel images, transform and inverse) are "
    "50% of a step, three quarters of it backward, and the mixer 67% for 31% of the MACs against "
    "pooling's 1.3% (4.4-4.8x poolformerv2_s12 side by side)",
    "unireplknet_a": "the Dilated Reparam Block's training form (a 13x13 depthwise conv plus five "
    "dilated depthwise branches, each with a BatchNorm) is 62% of a step for 14% of the MACs, "
    "the dilated 7x7 21% and the 13x13 14% with a CPU backward 22x its forward, where "
    "convnext_atto has one 7x7 depthwise conv at 23% (3.2-3.4x side by side)",
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
