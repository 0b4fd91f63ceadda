"""Classification datamodules: splits, shapes, formats, augmentation."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from data.base import reduce_channels
from data.classification import (
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    read_idx,
)


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = DigitsDataModule(seed=0), DigitsDataModule(seed=0)
    a.setup(), b.setup()
    sizes = {k: len(v) for k, v in a.datasets.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == sizes["val"] == 270
    assert np.array_equal(a.datasets["test"].labels, b.datasets["test"].labels)
    counts = np.bincount(a.datasets["test"].labels, minlength=10)
    assert counts.min() >= 26 and counts.max() <= 28  # stratified: ~27 per class
    train_images = {im.tobytes() for im in a.datasets["train"].images}
    assert not any(im.tobytes() in train_images for im in a.datasets["test"].images)


def test_digits_batches_are_normalised_grey_32px():
    dm = DigitsDataModule(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), batch_size=8)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (8, 1, 32, 32) and batch["label"].dtype == torch.int64
    assert dm.mean == pytest.approx((0.449,), abs=1e-3)  # RGB statistics fitted to one channel
    restored = dm.denormalize(batch["image"])
    assert restored.shape == (8, 32, 32, 1) and 0 <= restored.min() and restored.max() <= 1


def test_reduce_channels():
    assert reduce_channels((0.2, 0.4, 0.6), 1) == pytest.approx((0.4,))
    assert reduce_channels((0.5,), 3) == (0.5, 0.5, 0.5)


def _write_idx(path, array):
    with gzip.open(path, "wb") as f:
        f.write(
            struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        )
        f.write(array.tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 50)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz",
            rng.integers(0, 255, (n, 28, 28), dtype=np.uint8),
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    assert read_idx(tmp_path / "t10k-images-idx3-ubyte.gz").shape == (50, 28, 28)
    dm = FashionMNISTDataModule(root=str(tmp_path), val_size=40, batch_size=4)
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 160, "val": 40, "test": 50}
    assert dm.num_classes == 10 and dm.class_names[9] == "Ankle boot"
    assert next(iter(dm.train_dataloader()))["image"].shape == (4, 1, 32, 32)


def _folder(root, classes, n=10, size=(20, 12)):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((*size, 3), 10 * i, np.uint8)).save(root / c / f"{i}.png")


def test_imagefolder_flat_layout_is_split_by_seed(tmp_path):
    _folder(tmp_path, ["a", "b", "c"], n=20)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, batch_size=4)
    dm.setup()
    assert dm.class_names == ["a", "b", "c"]
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sum(sizes.values()) == 60 and sizes["test"] == 9
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16)  # non-square files are resized


def test_imagefolder_uses_split_folders(tmp_path):
    _folder(tmp_path / "train", ["x", "y"], n=8)
    _folder(tmp_path / "test", ["x", "y"], n=3)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, in_chans=1)
    dm.setup()
    assert len(dm.datasets["test"]) == 6  # the given test folder, untouched
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 16  # val carved from train
    assert dm.datasets["train"][0]["image"].shape == (1, 16, 16)
