"""The central claim: every backbone config x every task trains one step and validates one step.

`debug=fdr` runs one training, one validation and one test batch through train.run, on tiny
inputs. A pair that cannot work must be refused before training with a clear reason, and must be
listed in REFUSED below, so a new refusal is a decision, not an accident.
"""

import math

import pytest

import train
from tests.conftest import CONF

BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))

# segmentation and detection data: two synthetic 64 px scenes per split
TWO_SCENES = ["data.image_size=64", "data.batch_size=2"]
TWO_SCENES += [f"data.{split}_size=2" for split in ("train", "val", "test")]

# restoration: four small training crops; one centre crop of a photo to validate and test
FEW_CROPS = ["data.samples_per_epoch=4", "data.batch_size=2"]

# overrides that make each task's embedded default data tiny
TINY = {
    "classification": ["data.batch_size=4"],
    "segmentation": TWO_SCENES,
    "detection": TWO_SCENES,
    "super_resolution": [*FEW_CROPS, "data.patch_size=12", "data.eval_size=16"],
    "denoising": [*FEW_CROPS, "data.patch_size=16", "data.eval_size=24"],
}

# the zoo's image -> image networks: whole restoration models, no backbones
RESTORATION_NETS = ("cfsr", "dncnn", "espcn", "mirnet", "mixer_body")

# (backbone config, task) -> the words the refusal must contain
REFUSED: dict[tuple[str, str], str] = {
    # image-to-image networks have no feature pyramid for the dense-prediction heads
    **{
        (backbone, task): f"cannot serve task={task}.*image restoration network"
        for backbone in RESTORATION_NETS
        for task in ("segmentation", "detection")
    },
    # nor a classifier head
    **{
        (backbone, "classification"): "image restoration network.*not a classifier"
        for backbone in RESTORATION_NETS
    },
}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_runs_task(make_cfg, backbone, task):
    cfg = make_cfg(f"backbone={backbone}", f"task={task}", "debug=fdr", *TINY.get(task, []))
    if (backbone, task) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[backbone, task]):
            train.run(cfg)
        return
    results = train.run(cfg)
    value = results["metrics"][results["main_metric"]]
    assert math.isfinite(value)
    assert results["params"] > 0
