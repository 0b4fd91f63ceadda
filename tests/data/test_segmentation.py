"""Segmentation datamodules: synthetic scenes, augmentation, mask folders, VOC, bad masks."""

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from data.segmentation import (
    InstrumentsDataModule,
    MaskError,
    MaskFolderDataModule,
    VOCSegmentationDataModule,
)
from data.synth.instruments import AugMix, draw_instrument, paste

TINY = dict(train_size=6, val_size=4, test_size=4, image_size=64, batch_size=4)


def test_instrument_labels_are_exact_by_construction():
    rng = np.random.default_rng(0)
    sprite = draw_instrument(96, rng)
    assert set(np.unique(sprite.parts)) == {0, 1, 2, 3}  # background, shaft, wrist, jaws
    # the shaft enters from the border, the instrument is painted exactly where it is labelled
    assert (
        np.concatenate([sprite.parts[[0, -1]].ravel(), sprite.parts[:, [0, -1]].ravel()]).max() > 0
    )
    assert (sprite.image[sprite.parts == 0] == 0).all()
    background = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    image, mask = paste(background, [sprite])
    assert np.array_equal(mask, sprite.parts)
    labelled = mask > 0
    assert np.array_equal(image[~labelled], background[~labelled])
    assert np.array_equal(image[labelled], sprite.image[labelled])


def test_second_instrument_occludes_the_first_and_its_labels():
    rng = np.random.default_rng(1)
    first, second = draw_instrument(64, rng), draw_instrument(64, rng)
    _, mask = paste(np.zeros((64, 64, 3), np.uint8), [first, second])
    on_top = second.parts > 0
    assert np.array_equal(mask[on_top], second.parts[on_top])
    assert np.array_equal(mask[~on_top], first.parts[~on_top])


def test_val_and_test_scenes_are_fixed_by_the_seed():
    a = InstrumentsDataModule(**TINY)
    b = InstrumentsDataModule(**{**TINY, "train_size": 3})
    a.setup(), b.setup()
    for split in ("val", "test"):
        assert np.array_equal(a.datasets[split].images, b.datasets[split].images)
        assert np.array_equal(a.datasets[split].masks, b.datasets[split].masks)
    assert not np.array_equal(a.datasets["val"].images, a.datasets["test"].images)
    c = InstrumentsDataModule(**TINY, seed=1)
    c.setup()
    assert not np.array_equal(a.datasets["test"].images, c.datasets["test"].images)


def test_batches_are_images_and_long_masks():
    dm = InstrumentsDataModule(**TINY)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 64, 64) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}
    assert dm.task_kwargs == {"in_chans": 3, "num_classes": 4,
                              "class_names": ["background", "shaft", "wrist", "jaws"],
                              "ignore_index": 255}  # fmt: skip


def test_flip_and_scale_move_the_mask_with_the_image():
    dm = InstrumentsDataModule(**TINY, hflip=1.0, vflip=0.0, scale=(0.5, 0.5), augmix=False,
                               mean=(0.0,), std=(1.0,))  # fmt: skip
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    image[8:40, 4:20] = (255, 0, 0)  # a red block on the left, class 1
    mask[8:40, 4:20] = 1
    out = dm.transform(train=True)(image=image, mask=mask)
    red = (out["image"][0] > 0.5) & (out["image"][1] < 0.5)
    labelled = torch.as_tensor(out["mask"]) == 1
    assert labelled.sum() == pytest.approx(32 * 16 / 4, rel=0.15)  # scaled by 0.5 per side
    assert torch.nonzero(labelled)[:, 1].float().mean() > 32  # flipped to the right half
    assert (red & labelled).sum() >= 0.8 * labelled.sum()  # pixels and labels coincide
    assert (red & ~labelled).sum() <= 0.2 * labelled.sum()
    assert (torch.as_tensor(out["mask"])[0] == 255).all()  # zoomed-out border is ignored


def test_augmix_mixes_pixels_only():
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = np.arange(32 * 32).reshape(32, 32) % 4
    out = A.Compose([AugMix()], seed=0)(image=image, mask=mask)
    assert out["image"].shape == image.shape and out["image"].dtype == np.uint8
    assert not np.array_equal(out["image"], image)
    assert np.array_equal(out["mask"], mask)
    grey = A.Compose([AugMix()], seed=0)(image=image[..., :1])["image"]
    assert grey.shape == (32, 32, 1)


def _folder(tmp_path, n=6, size=(16, 16), mask_size=None, value=1):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(n):
        Image.new("RGB", size, (i * 30, 0, 0)).save(tmp_path / "images" / f"{i}.jpg")
        mask = np.zeros((mask_size or size)[::-1], np.uint8)
        mask[2:6, 2:6] = value
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    return tmp_path


def test_mask_folder_reads_index_pngs(tmp_path):
    dm = MaskFolderDataModule(root=_folder(tmp_path, n=10), classes=["bg", "thing"],
                              image_size=32, batch_size=2)  # fmt: skip
    dm.setup()
    assert sum(len(d) for d in dm.datasets.values()) == 10
    batch = next(iter(dm.test_dataloader()))
    assert batch["mask"].shape == (2, 32, 32) and set(batch["mask"].unique().tolist()) == {0, 1}


def test_mask_size_mismatch_names_the_file(tmp_path):
    dm = MaskFolderDataModule(root=_folder(tmp_path, mask_size=(8, 8)), classes=["bg", "thing"])
    with pytest.raises(
        MaskError, match=r"masks/\d\.png: mask size 8x8 \(WxH\) does not match its image's 16x16"
    ):
        dm.setup()


def test_unknown_class_index_names_the_file(tmp_path):
    dm = MaskFolderDataModule(root=_folder(tmp_path, value=7), classes=["bg", "thing"])
    with pytest.raises(MaskError, match=r"masks/\d\.png: unknown class index \[7\]; the 2 classes"):
        dm.setup()


def test_colour_masks_need_a_palette(tmp_path):
    root = _folder(tmp_path)
    Image.new("RGB", (16, 16), (0, 128, 0)).save(root / "masks" / "0.png")
    with pytest.raises(MaskError, match=r"0\.png: mask is a colour \(RGB\) image.*data.palette"):
        MaskFolderDataModule(root=root, classes=["bg", "thing"], split_fractions=(0.2, 0.2)).setup()
    dm = MaskFolderDataModule(root=root, classes=["bg", "thing"], palette=[[0, 0, 0], [0, 128, 0]])
    dm.setup()  # every mask decodes: index PNGs and the colour one


def test_images_without_masks_are_listed(tmp_path):
    root = _folder(tmp_path)
    (root / "masks" / "3.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) .* have no mask .*: 3\.jpg"):
        MaskFolderDataModule(root=root, classes=["bg", "thing"])


def _voc(root, ids=("a", "b", "c", "d")):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for i in ids:
        Image.new("RGB", (20, 12), (90, 90, 90)).save(root / "JPEGImages" / f"{i}.jpg")
        mask = np.zeros((12, 20), np.uint8)
        mask[3:9, 5:15] = 15  # a person
        mask[2, :] = 255  # VOC's void outline
        palette_png = Image.fromarray(mask, mode="P")
        palette_png.putpalette([0, 0, 0, 128, 0, 0] * 128)
        palette_png.save(root / "SegmentationClass" / f"{i}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("c\nd\n")
    return root


def test_voc_layout_palette_masks_and_ignore(tmp_path):
    dm = VOCSegmentationDataModule(root=_voc(tmp_path), image_size=32, batch_size=2)
    dm.setup()
    assert dm.num_classes == 21 and dm.datasets["test"].pairs == dm.datasets["val"].pairs
    mask = next(iter(dm.val_dataloader()))["mask"]
    assert set(mask.unique().tolist()) == {0, 15, 255}


def test_voc_root_without_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a Pascal VOC folder"):
        VOCSegmentationDataModule(root=tmp_path)
