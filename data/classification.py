"""Image classification data: scikit-learn's digits (the default), Fashion-MNIST, image folders.

Every datamodule yields batches `{"image": (B, C, H, W) float, "label": (B,) long}` and says
what the task needs to know: `num_classes`, `class_names`, `in_chans`, `image_size`.
"""

import gzip
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from .base import BaseDataModule, Compose, DataError, reading
from .images import is_image, read_image, verify_images

Augment = Literal["none", "glyph", "natural"]


class ClassificationDataset(Dataset):
    """Images (an array, or paths read on access) with integer labels, through albumentations."""

    def __init__(
        self,
        images: np.ndarray | Sequence[Path],
        labels: Sequence[int],
        transform: A.Compose,
        read: Callable[[Path], np.ndarray] | None = None,
    ):
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.transform, self.read = transform, read

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.read is None:
            image = self.transform(image=self.images[index])["image"]
        else:
            with reading(self.images[index]):
                image = self.transform(image=self.read(self.images[index]))["image"]
        return {"image": image, "label": torch.tensor(self.labels[index])}


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train/val/test, stratified by label; `fractions` are (val, test)."""
    indices = np.arange(len(labels))
    val_frac, test_frac = fractions
    train_val, test = train_test_split(
        indices, test_size=test_frac, stratify=labels, random_state=seed
    )
    train, val = train_test_split(
        train_val,
        test_size=val_frac / (1 - test_frac),
        stratify=labels[train_val],
        random_state=seed,
    )
    return train, val, test


class ClassificationDataModule(BaseDataModule):
    """Shared transforms and task interface; subclasses fill `_load()`.

    Args:
        image_size: Side of the square images the model sees.
        augment: Training augmentation: `glyph` (small affine, no flips: digits, characters),
            `natural` (random resized crop and horizontal flip: photos), or `none`.
        **kwargs: See `BaseDataModule`.
    """

    task = "classification"

    def __init__(self, image_size: int = 32, augment: Augment = "glyph", **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.augment = augment
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
        }

    def transform(self, train: bool) -> A.Compose:
        size = self.image_size
        ops: list[A.BasicTransform]
        match self.augment if train else "none":
            case "glyph":
                ops = [
                    A.Resize(size, size),
                    A.Affine(
                        scale=(0.9, 1.1), translate_percent=(-0.08, 0.08), rotate=(-10, 10), p=0.9
                    ),
                ]
            case "natural":
                ops = [A.RandomResizedCrop((size, size), scale=(0.5, 1.0)), A.HorizontalFlip()]
            case "none":
                ops = [A.Resize(size, size)]
            case other:
                raise ValueError(f"augment must be 'glyph', 'natural' or 'none', got {other!r}")
        ops += [A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0), ToTensorV2()]
        return Compose(ops)


class ArrayClassificationDataModule(ClassificationDataModule):
    """Data held in memory as uint8 arrays (N, H, W, C): digits, Fashion-MNIST."""

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Arrays of each split: `{"train": (images, labels), "val": ..., "test": ...}`."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split, (images, labels) in self._load().items():
            self.datasets[split] = ClassificationDataset(
                images, labels, self.transform(split == "train")
            )


class DigitsDataModule(ArrayClassificationDataModule):
    """scikit-learn's handwritten digits (UCI, 1797 real 8x8 scans), resized to `image_size`.

    The split is fixed and stratified: 70% train, 15% val, 15% test, by `seed`.
    """

    @property
    def in_chans(self) -> int:
        return 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.class_names = [str(d) for d in range(10)]

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # 0..16 intensities -> uint8, upsampled once here so that augmentation works at full size
        small = (digits.images * (255 / 16)).astype(np.uint8)
        images = np.stack(
            [cv2.resize(im, (self.image_size,) * 2, interpolation=cv2.INTER_CUBIC) for im in small]
        )[..., None]
        labels = digits.target
        train, val, test = stratified_split(labels, (0.15, 0.15), self.seed)
        return {
            s: (images[i], labels[i]) for s, i in (("train", train), ("val", val), ("test", test))
        }


FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with reading(path), opener(path, "rb") as f:
        _, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
        if dtype_code != 0x08:
            raise DataError(f"{path}: expected unsigned-byte IDX data (0x08), got {dtype_code:#x}")
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        data = f.read()
    if len(data) != np.prod(shape):
        raise DataError(
            f"{path}: its header says {'x'.join(map(str, shape))} bytes of data, the file holds "
            f"{len(data)}: it is truncated or not an IDX file"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


class FashionMNISTDataModule(ArrayClassificationDataModule):
    """Fashion-MNIST from its IDX files (as Debian's `dataset-fashion-mnist` installs them).

    Train and test are the official splits; val is a stratified `val_size` taken from train.

    Args:
        root: Folder with `train-images-idx3-ubyte[.gz]` and the three other IDX files.
        val_size: Images of the official train set held out for validation.
        subset: Use only this many training images (None: all 60000), for quick runs.
    """

    input_keys = ("root",)
    FILES = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    def __init__(
        self,
        root: str = "/usr/share/datasets/fashion-mnist",
        val_size: int = 5000,
        subset: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("image_size", 32)
        super().__init__(**kwargs)
        self.root, self.val_size, self.subset = Path(root), val_size, subset
        self.class_names = list(FASHION_MNIST_CLASSES)
        self._check_files()

    @property
    def in_chans(self) -> int:
        return 1

    def _find(self, stem: str) -> Path | None:
        return next((p for p in (self.root / stem, self.root / f"{stem}.gz") if p.is_file()), None)

    def _check_files(self) -> None:
        missing = [s for pair in self.FILES.values() for s in pair if self._find(s) is None]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST not found at data.root={str(self.root)!r}: missing "
                f"{', '.join(missing)} (or .gz). Install it with `sudo apt-get install "
                "dataset-fashion-mnist`, or download the four IDX files from "
                "https://github.com/zalandoresearch/fashion-mnist and set data.root=<folder>."
            )

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        arrays = {
            s: tuple(read_idx(self._find(f)) for f in files) for s, files in self.FILES.items()
        }
        images, labels = arrays["train"]
        train, val = train_test_split(
            np.arange(len(labels)), test_size=self.val_size, stratify=labels, random_state=self.seed
        )
        if self.subset is not None:
            train = train[: self.subset]
        return {
            "train": (images[train][..., None], labels[train]),
            "val": (images[val][..., None], labels[val]),
            "test": (arrays["test"][0][..., None], arrays["test"][1]),
        }


class ImageFolderDataModule(ClassificationDataModule):
    """Images in one sub-folder per class, the torchvision ImageFolder layout.

    `root/<class>/<image>` is split train/val/test by `seed` (stratified); or, when `root` has
    `train/` (and optionally `val/`, `test/`) folders, each holding class folders, those are used.
    Every image is checked before training starts, so a corrupt file fails early, by name.

    Args:
        root: The data folder.
        in_chans: 3 (RGB) or 1 (grey-scale); images are converted on read.
        split_fractions: (val, test) fractions when the folder has no split folders.
    """

    input_keys = ("root",)

    def __init__(
        self,
        root: str,
        in_chans: int = 3,
        split_fractions: tuple[float, float] = (0.15, 0.15),
        **kwargs,
    ):
        kwargs.setdefault("augment", "natural")
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self._in_chans = in_chans
        self.split_fractions = tuple(split_fractions)
        self.files = self._scan()

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def _class_folders(self, folder: Path) -> dict[str, list[Path]]:
        classes = {
            d.name: sorted(p for p in d.rglob("*") if is_image(p))
            for d in sorted(folder.iterdir())
            if d.is_dir() and not d.name.startswith(".")
        }
        return {name: files for name, files in classes.items() if files}

    def _scan(self) -> dict[str, tuple[list[Path], np.ndarray]]:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} does not exist or is not a folder"
            )
        split_dirs = {
            s: self.root / s for s in ("train", "val", "test") if (self.root / s).is_dir()
        }
        if "train" in split_dirs:
            per_split = {s: self._class_folders(d) for s, d in split_dirs.items()}
            self.class_names = sorted(per_split["train"])
            unknown = {c for classes in per_split.values() for c in classes} - set(self.class_names)
            if unknown:
                raise ValueError(
                    f"{self.root}: classes {sorted(unknown)} appear in val/test but not in train/"
                )
        else:
            per_split = {"all": self._class_folders(self.root)}
            self.class_names = sorted(per_split["all"])
        if len(self.class_names) < 2:
            raise ValueError(
                f"data.root={str(self.root)!r} needs at least two class folders with images "
                f"(root/<class>/<image>, or root/train/<class>/<image>); found {self.class_names}"
            )
        index = {name: i for i, name in enumerate(self.class_names)}
        flat = {
            s: (
                [p for c in classes for p in classes[c]],
                np.array([index[c] for c in classes for _ in classes[c]]),
            )
            for s, classes in per_split.items()
        }
        if "all" in flat:
            paths, labels = flat.pop("all")
            for split, idx in zip(
                ("train", "val", "test"), stratified_split(labels, self.split_fractions, self.seed)
            ):
                flat[split] = ([paths[i] for i in idx], labels[idx])
        else:
            # a split folder that is absent is carved out of train, as for a flat folder
            paths, labels = flat["train"]
            missing = [s for s in ("val", "test") if s not in flat]
            if missing:
                val_idx_frac = {"val": self.split_fractions[0], "test": self.split_fractions[1]}
                rest = np.arange(len(labels))
                for split in missing:
                    rest, taken = train_test_split(
                        rest,
                        test_size=val_idx_frac[split],
                        stratify=labels[rest],
                        random_state=self.seed,
                    )
                    flat[split] = ([paths[i] for i in taken], labels[taken])
                flat["train"] = ([paths[i] for i in rest], labels[rest])
        return flat

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        verify_images([p for paths, _ in self.files.values() for p in paths])
        for split, (paths, labels) in self.files.items():
            self.datasets[split] = ClassificationDataset(
                paths, labels, self.transform(split == "train"), read=self._read
            )

    def _read(self, path: Path) -> np.ndarray:
        return read_image(path, self.in_chans)
