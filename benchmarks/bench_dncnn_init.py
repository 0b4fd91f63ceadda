"""How fast DnCNN leaves "output the noisy input", for three initialisations.

    .venv/bin/python benchmarks/bench_dncnn_init.py [--steps 100] [--sigma 25] [--seed 0]
        [--batch-size 16] [--patch-size 48] [--lr 1e-3] [--threads N]

Trains the colour DnCNN-S (17 layers) on the embedded photographs' training crops (Gaussian
noise at `sigma`, the denoising task's stream) with Adam and the L1 loss, from:

- `pytorch`: PyTorch's default initialisation of every layer (He-style uniform);
- `identity-middle`: Dirac middle convolutions, the first and last at PyTorch's default;
- `identity`: Dirac middle convolutions and a zero last one: the zoo's DnCNN as built.

and prints, every 20 steps and at the end, the PSNR gain over the noisy input on the training
batches (the mean of the last 10). A benchmark, not a test: one seed, numbers move with it.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

# run as a file, the script sees benchmarks/ and not the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.restoration import PhotoDenoisingDataModule  # noqa: E402
from zoo.restoration import DnCNN  # noqa: E402

INITS = ("pytorch", "identity-middle", "identity")


def build(init: str) -> DnCNN:
    """The zoo's DnCNN with its layers re-initialised as `init` says."""
    model = DnCNN(in_chans=3)
    if init == "identity":
        return model
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if init == "pytorch" or module is model.body[0] or module is model.body[-1]:
                module.reset_parameters()
    return model


def psnr(images: torch.Tensor, clean: torch.Tensor) -> float:
    return float(-10 * torch.log10((images.clamp(0, 1) - clean).square().mean()))


def train(init: str, datamodule: PhotoDenoisingDataModule, args: argparse.Namespace) -> float:
    torch.manual_seed(args.seed)
    model = build(init)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    mean = torch.tensor(datamodule.mean).view(1, -1, 1, 1)
    std = torch.tensor(datamodule.std).view(1, -1, 1, 1)
    gains: list[float] = []
    start = time.perf_counter()
    while len(gains) < args.steps:
        for batch in datamodule.train_dataloader():
            noisy, clean = batch["image"] * std + mean, batch["target"]
            denoised = model(noisy)
            loss = nn.functional.l1_loss(denoised, clean)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            gains.append(psnr(denoised.detach(), clean) - psnr(noisy, clean))
            step = len(gains)
            if step % 20 == 0 or step == args.steps:
                recent = sum(gains[-10:]) / len(gains[-10:])
                seconds = time.perf_counter() - start
                print(f"{init:>15}  step {step:4d}  gain {recent:+6.2f} dB  ({seconds:.0f} s)")
            if step == args.steps:
                break
    return sum(gains[-10:]) / len(gains[-10:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    datamodule = PhotoDenoisingDataModule(
        sigma=args.sigma,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        samples_per_epoch=args.batch_size * args.steps,
        seed=args.seed,
    )
    datamodule.setup("fit")
    results = {init: train(init, datamodule, args) for init in INITS}
    print(f"\nPSNR gain over the noisy input after {args.steps} steps (sigma {args.sigma:g}):")
    for init, gain in results.items():
        print(f"  {init:>15}: {gain:+.2f} dB")


if __name__ == "__main__":
    main()
