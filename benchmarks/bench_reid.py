"""OSNet, OSNet-AIN and ResNet-50 on the synthetic pedestrians, same-domain and cross-domain.

    .venv/bin/python benchmarks/bench_reid.py [--max-time 00:00:12:00] [--seed 0] [--dry-run]

OSNet's claims (Zhou et al., ICCV 2019, arXiv 1905.00953; TPAMI 2021, arXiv 1910.06827): the
2.2M-parameter OSNet matches much larger re-ID models, and OSNet-AIN (instance normalisation in
searched places) generalises better to unseen camera domains. Each model is trained once with
`python train.py task=reid` on camera domain `a` under the same time budget and tested on
domain `a` (same-domain); its best checkpoint is then tested on domain `b` (`mode=test
data.test_domain=b`: other cameras, lighting and backgrounds, no target data). The table at the
end gives params, rank-1, mAP and mINP, read from the runs' results.json. One seed: a
benchmark, not a test.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "OSNet x1.0": "backbone=reid/osnet_x1_0",
    "OSNet-AIN x1.0": "backbone=reid/osnet_ain_x1_0",
    "ResNet-50": "backbone=timm backbone.name=resnet50",
}
DOMAINS = {
    "same-domain (a -> a)": "data.test_domain=a",
    "cross-domain (a -> b)": "data.test_domain=b",
}


def run(overrides: list[str], output: Path, dry_run: bool) -> dict | None:
    """One `train.py` run writing into `output`; its results.json, or None if it failed."""
    command = [sys.executable, "train.py", "task=reid", "logger=csv",
               f"hydra.run.dir={output}", *overrides]  # fmt: skip
    print(" ".join(command), flush=True)
    if dry_run:
        return None
    subprocess.run(command, cwd=ROOT, check=False)
    results = output / "results.json"
    return json.loads(results.read_text()) if results.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-time", default="00:00:12:00", help="training budget per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_reid")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    rows = []
    for model, model_override in MODELS.items():
        slug = model.replace(" ", "_")
        # train once on domain a (tested on a), then test that checkpoint on domain b
        trained = run([*model_override.split(), f"trainer.max_time={args.max_time}",
                       f"seed={args.seed}"], args.out / f"{slug}_a", args.dry_run)  # fmt: skip
        rows.append((model, "same-domain (a -> a)", trained))
        checkpoint = trained and trained.get("best_checkpoint")
        crossed = run([*model_override.split(), "mode=test", f"ckpt_path={checkpoint}",
                       "data.test_domain=b", f"seed={args.seed}"], args.out / f"{slug}_b",
                      args.dry_run or not checkpoint)  # fmt: skip
        if crossed is not None:
            crossed["params_m"] = trained["params_m"]
        rows.append((model, "cross-domain (a -> b)", crossed))
    print("\n| model | setting | params (M) | rank-1 | mAP | mINP |\n|---|---|---|---|---|---|")
    for model, setting, results in rows:
        if results is None:
            print(f"| {model} | {setting} | | failed or not run | | |")
            continue
        m = results["metrics"]
        print(f"| {model} | {setting} | {results['params_m']:.2f} | {m['test/rank1']:.3f} | "
              f"{m['test/map']:.3f} | {m['test/minp']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
