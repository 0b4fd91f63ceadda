"""Semantic segmentation data: synthetic surgical scenes (the default), mask folders, Pascal VOC.

Every datamodule yields batches `{"image": (B, C, H, W) float, "mask": (B, H, W) long}`, where
mask pixels equal to `ignore_index` (255, Pascal VOC's convention) count in no loss or metric,
and says what the task needs to know: `num_classes`, `class_names`, `in_chans`, `ignore_index`.
Masks are checked against their images and their class list, with errors that name the file.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from .base import BaseDataModule, Compose, DataError, reading
from .images import DECODE_ERRORS, CorruptImageError, is_image, read_image, verify_images
from .synth.instruments import PART_NAMES, AugMix, Background, InstrumentScenes

log = logging.getLogger(__name__)

IGNORE_INDEX = 255

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip


class MaskError(DataError):
    """A mask that does not fit its image or the class list."""


def read_mask(path: Path, palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """A mask file as (H, W) class indices.

    Index PNGs (mode L) and palette PNGs (mode P, Pascal VOC's) hold the indices themselves;
    colour masks (RGB) need `palette`, one [r, g, b] per class, in class order.
    """
    try:
        with Image.open(path) as mask:
            mode = mask.mode
            if mode.startswith("F"):
                raise MaskError(
                    f"{path}: floating-point ({mode}) mask; masks hold class indices: save index "
                    "or palette PNGs"
                )
            if mode in ("LA", "PA"):
                mask = mask.getchannel(0)  # the alpha band says nothing of the class
            elif len(mask.getbands()) > 1:
                mask = mask.convert("RGB")
            array = np.asarray(mask)
    except DECODE_ERRORS as error:
        raise CorruptImageError(f"cannot read mask {path}: {error}") from error
    if array.ndim == 2:
        return array.astype(np.int64)
    if palette is None:
        raise MaskError(
            f"{path}: mask is a colour ({mode}) image; save index or palette PNGs, or give "
            "data.palette=[[r, g, b], ...] with one colour per class"
        )
    colours = array.astype(np.int64) @ np.array([65536, 256, 1])
    keys = np.array([r * 65536 + g * 256 + b for r, g, b in palette])
    indices = np.full(colours.shape, -1, np.int64)
    for index, key in enumerate(keys):
        indices[colours == key] = index
    if (indices < 0).any():
        unknown = sorted({tuple(c) for c in array[indices < 0][:1000].tolist()})[:5]
        raise MaskError(f"{path}: colours {unknown} are not in data.palette")
    return indices


def check_mask(mask: np.ndarray, image_shape: tuple[int, ...], class_names: Sequence[str],
               ignore_index: int, path: Path) -> None:  # fmt: skip
    """Raise `MaskError`, naming `path`, if the mask's size or class indices are wrong."""
    if mask.shape != tuple(image_shape[:2]):
        raise MaskError(
            f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) does not match its "
            f"image's {image_shape[1]}x{image_shape[0]}"
        )
    outside = (mask >= len(class_names)) | (mask < 0)
    unknown = np.unique(mask[outside & (mask != ignore_index)])
    if unknown.size:
        raise MaskError(
            f"{path}: unknown class index {unknown.tolist()}; the {len(class_names)} classes are "
            f"0..{len(class_names) - 1} ({', '.join(class_names)}) and {ignore_index} is ignored"
        )


def _sample(image: np.ndarray, mask: np.ndarray, transform: A.Compose) -> dict[str, torch.Tensor]:
    out = transform(image=image, mask=mask)
    return {"image": out["image"], "mask": torch.as_tensor(out["mask"]).long()}


class ArraySegmentationDataset(Dataset):
    """Images (N, H, W, C) uint8 and masks (N, H, W) held in memory."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, transform: A.Compose):
        self.images, self.masks, self.transform = images, masks, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return _sample(self.images[index], self.masks[index], self.transform)


class FileSegmentationDataset(Dataset):
    """(image file, mask file) pairs, read and checked on access."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], transform: A.Compose, in_chans: int,
                 class_names: Sequence[str], ignore_index: int,
                 palette: Sequence[Sequence[int]] | None = None):  # fmt: skip
        self.pairs, self.transform, self.in_chans = list(pairs), transform, in_chans
        self.class_names, self.ignore_index, self.palette = class_names, ignore_index, palette

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, self.in_chans)
        mask = read_mask(mask_path, self.palette)
        check_mask(mask, image.shape, self.class_names, self.ignore_index, mask_path)
        return image, mask.astype(np.uint8)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with reading(" and ".join(map(str, self.pairs[index]))):
            return _sample(*self.read(index), self.transform)

    def verify(self) -> None:
        """Read every pair once, so that a bad file fails before training, by name."""
        verify_images([image for image, _ in self.pairs])
        verify_images([mask for _, mask in self.pairs], masks=True)
        for index in range(len(self)):
            self.read(index)


class SegmentationDataModule(BaseDataModule):
    """Shared transforms and task interface; subclasses fill `self.datasets` in `setup`.

    Images are fitted into `image_size` squares (longest side resized, then padded, the padding
    ignored), so that batches stack. Training adds a random scale, flips and, optionally,
    AugMix; albumentations moves the mask with the image.

    Args:
        image_size: Side of the square the model sees.
        scale: Range of the random zoom of training images (1: none).
        hflip: Probability of a horizontal flip in training.
        vflip: Probability of a vertical flip in training.
        augmix: Chained augmentation mixing (pixel-level AugMix) in training.
        ignore_index: Mask value that no loss or metric counts.
        **kwargs: See `BaseDataModule`.
    """

    task = "segmentation"

    def __init__(
        self,
        image_size: int = 128,
        scale: tuple[float, float] = (0.75, 1.25),
        hflip: float = 0.5,
        vflip: float = 0.0,
        augmix: bool = False,
        ignore_index: int = IGNORE_INDEX,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size, self.scale = image_size, tuple(scale)
        self.hflip, self.vflip, self.augmix = hflip, vflip, augmix
        self.ignore_index = ignore_index
        self.class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def task_kwargs(self) -> dict:
        return {
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "ignore_index": self.ignore_index,
        }

    def transform(self, train: bool) -> A.Compose:
        size, ignore = self.image_size, self.ignore_index
        ops: list[A.BasicTransform] = [
            A.LongestMaxSize(max_size=size),
            A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore),
        ]
        if train:
            ops += [
                A.Affine(scale=self.scale, fill=0, fill_mask=ignore, p=float(self.scale != (1, 1))),
                A.HorizontalFlip(p=self.hflip),
                A.VerticalFlip(p=self.vflip),
            ]
            if self.augmix:
                ops.append(AugMix())
        ops += [A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0), ToTensorV2()]
        return Compose(ops)


class InstrumentsDataModule(SegmentationDataModule):
    """Synthetic surgical scenes: instrument parts on a real tissue image, made offline.

    The one-to-many synthesis of Wang et al. (arXiv 2206.11804), see `data.synth.instruments`:
    training scenes paste augmented copies of `seed_instruments` procedural instruments onto
    augmented crops of one scikit-image photograph; validation and test scenes are fixed by
    `seed` and use freshly drawn instruments. Classes: background, shaft, wrist, jaws.

    Args:
        train_size: Training scenes (made once, in `setup`; augmented on every epoch).
        val_size: Validation scenes.
        test_size: Test scenes.
        background: `retina` or `immunohistochemistry` (scikit-image's bundled photographs).
        seed_instruments: Procedural instruments the training scenes are made from.
        **kwargs: See `SegmentationDataModule`; AugMix is on by default, as in the paper.
    """

    def __init__(
        self,
        train_size: int = 600,
        val_size: int = 100,
        test_size: int = 200,
        background: Background = "retina",
        seed_instruments: int = 12,
        **kwargs,
    ):
        kwargs.setdefault("augmix", True)
        kwargs.setdefault("vflip", 0.5)
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.background, self.seed_instruments = background, seed_instruments
        self.class_names = list(PART_NAMES)

    @property
    def in_chans(self) -> int:
        return 3

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        scenes = InstrumentScenes(self.image_size, self.background, self.seed_instruments,
                                  seed=self.seed)  # fmt: skip
        # each split has its own seed, so val/test stay fixed whatever the train size
        for offset, split in enumerate(("train", "val", "test")):
            images, masks = scenes.generate(
                self.sizes[split], seed=1000 * self.seed + offset, novel=split != "train"
            )
            self.datasets[split] = ArraySegmentationDataset(
                images, masks, self.transform(split == "train")
            )


class _FileSegmentationDataModule(SegmentationDataModule):
    """Datamodules over (image, mask) files: `self.pairs[split]` filled by `_scan()`."""

    input_keys = ("root",)

    def __init__(self, root: str, in_chans: int = 3, verify: bool = True,
                 palette: Sequence[Sequence[int]] | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} does not exist or is not a folder"
            )
        self._in_chans, self.verify = in_chans, verify
        self.palette = [tuple(c) for c in palette] if palette else None
        self.pairs: dict[str, list[tuple[Path, Path]]] = {}

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.palette is not None and len(self.palette) != self.num_classes:
            raise MaskError(
                f"data.palette has {len(self.palette)} colours for {self.num_classes} classes"
            )
        for split, pairs in self.pairs.items():
            dataset = FileSegmentationDataset(
                pairs, self.transform(split == "train"), self.in_chans, self.class_names,
                self.ignore_index, self.palette,
            )  # fmt: skip
            if self.verify:
                dataset.verify()
            self.datasets[split] = dataset


def _pair_by_stem(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(
            f"expected an images/ and a masks/ folder, got {images} and {masks}"
        )
    mask_files = {p.stem: p for p in masks.iterdir() if is_image(p)}
    image_files = sorted(p for p in images.iterdir() if is_image(p))
    missing = [p.name for p in image_files if p.stem not in mask_files]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) in {images} have no mask of the same name in {masks}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    if not image_files:
        raise FileNotFoundError(f"no images in {images}")
    return [(p, mask_files[p.stem]) for p in image_files]


class MaskFolderDataModule(_FileSegmentationDataModule):
    """Images and masks of the same file name: `root/images/*` with `root/masks/*.png`.

    With `root/{train,val,test}/{images,masks}` those splits are used; otherwise the pairs are
    split train/val/test by `split_fractions` and `seed`. Masks are index or palette PNGs
    (pixel = class index) or colour PNGs with `palette`; `ignore_index` pixels are ignored.

    Args:
        root: The data folder.
        classes: Class names, in index order (index 0 first).
        palette: For colour masks: one [r, g, b] per class, in the order of `classes`.
        in_chans: 3 (RGB) or 1 (grey-scale); images are converted on read.
        split_fractions: (val, test) fractions when the folder has no split folders.
        verify: Read every pair in `setup`, so a bad file fails before training.
        **kwargs: See `SegmentationDataModule`.
    """

    def __init__(self, root: str, classes: Sequence[str],
                 split_fractions: tuple[float, float] = (0.15, 0.15), **kwargs):  # fmt: skip
        super().__init__(root, **kwargs)
        if len(classes) < 2:
            raise ValueError(f"data.classes needs at least two class names, got {list(classes)}")
        self.class_names = list(classes)
        if (self.root / "train").is_dir():
            self.pairs = {
                split: _pair_by_stem(self.root / split / "images", self.root / split / "masks")
                for split in ("train", "val", "test")
                if (self.root / split).is_dir()
            }
            self.pairs.setdefault("val", self.pairs["train"][:0])
            if not self.pairs["val"]:
                raise FileNotFoundError(f"{self.root} has train/ but no val/ folder")
            self.pairs.setdefault("test", self.pairs["val"])
        else:
            pairs = _pair_by_stem(self.root / "images", self.root / "masks")
            val_frac, test_frac = split_fractions
            rest, test = train_test_split(pairs, test_size=test_frac, random_state=self.seed)
            train, val = train_test_split(
                rest, test_size=val_frac / (1 - test_frac), random_state=self.seed
            )
            self.pairs = {"train": train, "val": val, "test": test}


class VOCSegmentationDataModule(_FileSegmentationDataModule):
    """The Pascal VOC layout: `JPEGImages/`, `SegmentationClass/` palette PNGs, 255 = ignore.

    Splits come from `ImageSets/Segmentation/{train,val}.txt`; `test.txt` is used when its masks
    exist (VOC's own test masks are not public), otherwise the test split is `val` (logged).

    Args:
        root: The folder holding `JPEGImages/` (e.g. `VOCdevkit/VOC2012`).
        classes: Class names; VOC's 21 (background first) by default.
        **kwargs: See `SegmentationDataModule`.
    """

    def __init__(self, root: str, classes: Sequence[str] = tuple(VOC_CLASSES), **kwargs):
        super().__init__(root, **kwargs)
        self.class_names = list(classes)
        lists = self.root / "ImageSets" / "Segmentation"
        if not (self.root / "JPEGImages").is_dir() or not lists.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} is not a Pascal VOC folder: it needs JPEGImages/, "
                "SegmentationClass/ and ImageSets/Segmentation/ (point it at VOCdevkit/VOC2012)"
            )
        for split in ("train", "val", "test"):
            if (lists / f"{split}.txt").is_file():
                pairs = self._read_list(lists / f"{split}.txt", required=split != "test")
                if pairs:
                    self.pairs[split] = pairs
        if "train" not in self.pairs or "val" not in self.pairs:
            raise FileNotFoundError(f"{lists} needs train.txt and val.txt")
        if "test" not in self.pairs:
            log.info("VOC: no test masks; the test split is the val split")
            self.pairs["test"] = self.pairs["val"]

    def _read_list(self, path: Path, required: bool) -> list[tuple[Path, Path]]:
        ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
        pairs = [
            (self.root / "JPEGImages" / f"{i}.jpg", self.root / "SegmentationClass" / f"{i}.png")
            for i in ids
        ]
        missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
        if missing and required:
            raise FileNotFoundError(
                f"{path}: {len(missing)} listed file(s) do not exist: {', '.join(missing[:5])}"
            )
        return [] if missing else pairs
