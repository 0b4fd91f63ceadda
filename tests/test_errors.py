"""Every mistake a user can make gets a clear error before training starts."""

import numpy as np
import pytest
from hydra.errors import MissingConfigException
from PIL import Image

import train
from data.images import CorruptImageError
from tasks.base import NonFiniteLossError


def test_unknown_backbone_suggests_close_names(make_cfg):
    with pytest.raises(train.ConfigError, match=r"hornet_tiny7x7.*Did you mean: hornet_tiny_7x7"):
        train.run(make_cfg("backbone=hornet", "backbone.name=hornet_tiny7x7"))


@pytest.mark.parametrize(
    "group, choice", [("task", "segmentatoin"), ("data", "digitz"), ("backbone", "hornett")]
)
def test_unknown_choice_lists_the_options(make_cfg, group, choice):
    with pytest.raises(
        MissingConfigException, match=rf"(?s)Could not find '{group}/{choice}'.*Available options"
    ):
        make_cfg(f"{group}={choice}")


def test_missing_data_root(make_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root='.*nowhere' does not exist"):
        train.run(make_cfg("data=imagefolder", f"data.root={tmp_path / 'nowhere'}"))


def test_data_root_without_class_folders(make_cfg, tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="needs at least two class folders"):
        train.run(make_cfg("data=imagefolder", f"data.root={tmp_path / 'flat'}"))


def test_corrupt_image_is_named(make_cfg, tmp_path):
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(root / name / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(CorruptImageError, match=r"dog/broken.png"):
        train.run(make_cfg("data=imagefolder", f"data.root={root}", "debug=fdr"))


def test_fashion_mnist_absent_says_how_to_get_it(make_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        train.run(make_cfg("data=fashion_mnist", f"data.root={tmp_path}"))


def test_task_data_mismatch_names_the_fitting_data(make_cfg, monkeypatch):
    from data.classification import DigitsDataModule

    monkeypatch.setattr(DigitsDataModule, "task", "segmentation")
    with pytest.raises(
        train.ConfigError,
        match=r"cannot feed task=classification.*Data sets for classification: .*fashion_mnist",
    ):
        train.run(make_cfg())


def test_mode_test_needs_a_checkpoint(make_cfg, tmp_path):
    with pytest.raises(train.ConfigError, match="set ckpt_path"):
        train.run(make_cfg("mode=test"))
    with pytest.raises(train.ConfigError, match="no such checkpoint"):
        train.run(make_cfg(f"ckpt_path={tmp_path / 'missing.ckpt'}"))


def test_nan_loss_stops_with_advice(make_cfg, tmp_path):
    # an infinite learning rate sends the weights, then the loss, to inf/NaN after one step
    with pytest.raises(
        NonFiniteLossError, match=r"training loss is (nan|inf) .*Lower task.optimizer.lr"
    ):
        train.run(
            make_cfg(
                "task.optimizer.lr=inf", "trainer.max_epochs=1", "trainer.limit_train_batches=4"
            )
        )
    # nothing is lost: the state before the failing step is on disk
    assert (tmp_path / "checkpoints" / "interrupted.ckpt").is_file()
