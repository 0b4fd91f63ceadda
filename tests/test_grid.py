"""The central claim: every backbone config x every task trains one step and validates one step.

`debug=fdr` runs one training, one validation and one test batch through train.run, on tiny
inputs. A pair that cannot work must be refused before training with a clear reason, and must be
listed in REFUSED below, so a new refusal is a decision, not an accident.
"""

import math

import pytest

import train
from tests.conftest import CONF
from zoo.operators.seq_registry import list_sequence_mixers

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
    # volatility: 120 simulated intervals (about 100 samples), batches of 4
    "volatility": ["data.intervals=120", "data.batch_size=4"],
    "segmentation": TWO_SCENES,
    "detection": TWO_SCENES,
    "super_resolution": [*FEW_CROPS, "data.patch_size=12", "data.eval_size=16"],
    "denoising": [*FEW_CROPS, "data.patch_size=16", "data.eval_size=24"],
    # re-ID: 32 px square crops (as classification's), 2 x 2 PK batches, a few identities
    "reid": [
        "data.image_size=32",
        "data.aspect_ratio=1.0",
        "data.train_ids=8",
        "data.test_ids=3",
        "data.val_ids=2",
        "data.distractors=2",
        "data.cameras=3",
        "data.ids_per_batch=2",
        "data.images_per_id=2",
        "data.batch_size=8",
        "data.verify=false",
    ],
    # surgical video: one 14 s synthetic video per split, clips of 4 frames of 32 px, batches of 2
    "surgical_video": [
        "data.videos={train:1,val:1,test:1}",
        "data.seconds=[14,14]",
        "data.clip_frames=4",
        "data.image_size=32",
        "data.batch_size=2",
    ],
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
    # volatility pools a backbone's features into a regression head: they have none
    **{
        (backbone, "volatility"): "image restoration network.*not a classifier.*task=volatility"
        for backbone in RESTORATION_NETS
    },
    # the 1D sequence MetaFormer reads volatility's sequences; every image task refuses it
    **{
        ("metaformer_1d", task): "1D sequence model.*task=volatility"
        for task in TASKS
        if task != "volatility"
    },
    # re-ID pools a classifier backbone's feature map: they have none
    **{
        (backbone, "reid"): "image restoration network.*not a classifier.*task=reid"
        for backbone in RESTORATION_NETS
    },
    # surgical video runs a classifier backbone on every frame: they have no features
    **{
        (backbone, "surgical_video"): "cannot serve task=surgical_video.*image restoration network"
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


@pytest.mark.parametrize("mixer", list_sequence_mixers())
def test_every_sequence_mixer_runs_volatility(make_cfg, mixer):
    # the grid runs metaformer_1d with its config's mixer; the others are one override away
    cfg = make_cfg("backbone=metaformer_1d", f"backbone.mixer={mixer}", "task=volatility",
                   "debug=fdr", *TINY["volatility"])  # fmt: skip
    assert cfg.backbone.kwargs.mixer == mixer
    results = train.run(cfg)
    assert math.isfinite(results["metrics"]["test/rmspe"])
