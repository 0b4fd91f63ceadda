"""Restoration data: (degraded, clean) image pairs for super-resolution and denoising.

Every datamodule yields batches `{"image": degraded, normalised (B, C, h, w), "target": clean
pixels in [0, 1] (B, C, H, W), "name": image names}`. Training items are random aligned crops
(`patch_size` degraded pixels a side) with a random flip/rotation, `samples_per_epoch` of them per
epoch; validation and test items are whole images, one per batch (their sizes differ).

Super-resolution (H = h * scale): the low-resolution image is the bicubic downscale of the
high-resolution one, made as the SR literature makes it (MATLAB's `imresize`: Keys' cubic kernel
with a = -0.5, widened by the scale to anti-alias, rounded to 8 bits). We use torch's
`F.interpolate(mode="bicubic", antialias=True)`, which is that kernel exactly (a test checks it;
MATLAB differs only within a few pixels of the border, where it mirrors the image instead of
renormalising the kernel; PIL's BICUBIC rounds between its two passes and differs by a few levels).
High-resolution evaluation images are first cropped to a multiple of the scale ("mod-crop").
A folder of low-resolution images can be given instead (DIV2K's LR_bicubic, Set5's LR).

Denoising (H = h): additive white Gaussian noise of a fixed `sigma` (on the 0-255 scale,
unclipped, as DnCNN's protocol), or blind: a sigma drawn per training image from `blind_range`
(validation and test stay at `sigma`). Evaluation noise is seeded per image, so every epoch and
every run sees the same noisy images. Real noisy/clean pairs (SIDD) replace the synthetic noise.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from zoo.restoration.pixels import bicubic_resize, quantize

from .base import BaseDataModule, DataError, evaluation_sampler, reading
from .images import image_size, is_image, read_image, verify_images

Array = np.ndarray


def convert_channels(image: Array, channels: int) -> Array:
    """(H, W[, C]) uint8 -> (H, W, channels) uint8: grey <-> RGB as PIL converts, alpha dropped."""
    converted = np.asarray(Image.fromarray(image).convert("L" if channels == 1 else "RGB"))
    return converted[..., None] if channels == 1 else converted


@dataclass(frozen=True)
class ImageRecord:
    """One clean image, in memory or on disk, with its degraded partner when one exists.

    Args:
        name: How figures and errors call it (the file path, for files).
        clean: The clean (high-resolution) image: a (H, W, C) uint8 array or a file.
        degraded: The degraded image (low-resolution or noisy), or None to synthesise it.
    """

    name: str
    clean: Array | Path
    degraded: Array | Path | None = None

    def load(self, channels: int) -> tuple[Array, Array | None]:
        def read(source: Array | Path | None) -> Array | None:
            if source is None:
                return None
            if isinstance(source, Path):
                return read_image(source, channels)
            return convert_channels(source, channels)

        return read(self.clean), read(self.degraded)

    def in_memory(self) -> bool:
        return not isinstance(self.clean, Path)


def check_pair_size(
    record: ImageRecord, clean: tuple[int, int], degraded: tuple[int, int], scale: int
) -> None:
    """The degraded partner must be the clean image's (width, height) divided by `scale`."""
    expected = (clean[0] // scale, clean[1] // scale)
    if tuple(degraded) != expected:
        raise DataError(
            f"{record.degraded} is {degraded[0]}x{degraded[1]} but its clean partner "
            f"{record.clean} is {clean[0]}x{clean[1]}: expected {expected[0]}x{expected[1]} (the "
            f"clean size divided by {scale}, rounded down)"
        )


def check_eval_size(record: ImageRecord, clean: tuple[int, int], scale: int) -> None:
    """A whole evaluation image must hold at least one degraded pixel."""
    if min(clean) < scale:
        raise DataError(
            f"{record.name} is {clean[0]}x{clean[1]}: too small for scale {scale} "
            f"(at least {scale}x{scale} pixels are needed)"
        )


# --------------------------------------------------------------------------- degradations


class Degradation:
    """How a clean image becomes the network's input; `scale` is clean size over input size."""

    scale: int = 1

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


class BicubicDownscale(Degradation):
    """Super-resolution's degradation: MATLAB-style bicubic downscaling, rounded to 8 bits."""

    def __init__(self, scale: int):
        self.scale = scale

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return quantize(bicubic_resize(clean[None], 1 / self.scale)[0])


class GaussianNoise(Degradation):
    """Additive white Gaussian noise of level `sigma` (0-255 scale), not clipped."""

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return clean + torch.randn(clean.shape, generator=generator) * (self.sigma / 255)


class BlindGaussianNoise(Degradation):
    """Gaussian noise whose level is drawn uniformly from [low, high] for every image."""

    def __init__(self, low: float, high: float):
        self.low, self.high = float(low), float(high)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigma = self.low + (self.high - self.low) * torch.rand((), generator=generator).item()
        return clean + torch.randn(clean.shape, generator=generator) * (sigma / 255)


# --------------------------------------------------------------------------- datasets


def to_tensor(image: Array) -> torch.Tensor:
    """(H, W, C) uint8 -> (C, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div(255)


def pad_to(image: Array, height: int, width: int) -> Array:
    """Mirror-pad (edge-pad where an image is too thin to mirror) to at least height x width."""
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if min(image.shape[:2]) > max(pad_h, pad_w) else "edge"
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)


class RestorationPairs(Dataset):
    """(degraded, clean) pairs of a list of images: random crops to train, whole images to test.

    Args:
        records: The images.
        degradation: Makes the degraded image when a record has none.
        channels: 1 (grey-scale) or 3 (RGB); images are converted on read.
        mean: Normalisation mean of the degraded image (per channel).
        std: Normalisation std.
        train: Random crops with flips/rotations (else whole, deterministic images).
        patch_size: Side of a training crop of the degraded image.
        samples_per_epoch: Training crops per epoch (cycling over the images).
        eval_size: Centre-crop evaluation images to this side of the degraded image (None: whole).
        seed: Seed of the evaluation noise.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        degradation: Degradation,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        patch_size: int = 48,
        samples_per_epoch: int = 1000,
        eval_size: int | None = None,
        seed: int = 0,
    ):
        self.records, self.degradation, self.channels = list(records), degradation, channels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.train, self.patch_size, self.samples_per_epoch = train, patch_size, samples_per_epoch
        self.eval_size, self.seed = eval_size, seed
        self.scale = degradation.scale
        # in-memory images are converted once; files are read on access
        self._converted: dict[int, tuple[Array, Array | None]] = {}

    def _load(self, index: int) -> tuple[Array, Array | None]:
        record = self.records[index]
        if not record.in_memory():
            return record.load(self.channels)
        if index not in self._converted:
            self._converted[index] = record.load(self.channels)
        return self._converted[index]

    def __len__(self) -> int:
        return self.samples_per_epoch if self.train else len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            # training indices cycle over the images; the bound ends plain iteration
            raise IndexError(f"index {index} out of range for {len(self)} items")
        record = self.records[index % len(self.records)]
        with reading(record.name):
            clean, degraded = self._load(index % len(self.records))
            if degraded is not None:
                check_pair_size(record, clean.shape[1::-1], degraded.shape[1::-1], self.scale)
            if self.train:
                clean, degraded = self._random_crop(clean, degraded)
                generator = None  # the worker's seeded global generator
            else:
                check_eval_size(record, clean.shape[1::-1], self.scale)
                clean, degraded = self._eval_crop(clean, degraded)
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        target = to_tensor(clean)
        source = self.degradation(target, generator) if degraded is None else to_tensor(degraded)
        return {"image": (source - self.mean) / self.std, "target": target, "name": record.name}

    def _random_crop(self, clean: Array, degraded: Array | None) -> tuple[Array, Array | None]:
        s, p = self.scale, self.patch_size
        if degraded is None:
            # smaller than one crop: mirror-pad, and mod-crop so the degraded size is exact
            clean = pad_to(clean, p * s, p * s)
            top = int(torch.randint(0, clean.shape[0] - p * s + 1, ()))
            left = int(torch.randint(0, clean.shape[1] - p * s + 1, ()))
            clean = clean[top : top + p * s, left : left + p * s]
        else:
            degraded = pad_to(degraded, p, p)
            clean = pad_to(clean, degraded.shape[0] * s, degraded.shape[1] * s)
            top = int(torch.randint(0, degraded.shape[0] - p + 1, ()))
            left = int(torch.randint(0, degraded.shape[1] - p + 1, ()))
            degraded = degraded[top : top + p, left : left + p]
            clean = clean[top * s : (top + p) * s, left * s : (left + p) * s]
        # one of the 8 flips/rotations of the square, the same for both images
        turns, flip = int(torch.randint(0, 4, ())), bool(torch.randint(0, 2, ()))

        def transform(image: Array | None) -> Array | None:
            if image is None:
                return None
            image = np.rot90(image, turns)
            return image[:, ::-1] if flip else image

        return transform(clean), transform(degraded)

    def _eval_crop(self, clean: Array, degraded: Array | None) -> tuple[Array, Array | None]:
        s = self.scale
        h, w = clean.shape[0] // s, clean.shape[1] // s  # input size after the mod-crop
        top = left = 0
        if self.eval_size is not None:
            top, left = max(0, (h - self.eval_size) // 2), max(0, (w - self.eval_size) // 2)
            h, w = min(h, self.eval_size), min(w, self.eval_size)
        clean = clean[top * s : (top + h) * s, left * s : (left + w) * s]
        if degraded is not None:
            degraded = degraded[top : top + h, left : left + w]
        return clean, degraded


# --------------------------------------------------------------------------- embedded photos


def _skimage(name: str) -> Callable[[], Array]:
    def load() -> Array:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _motorcycle(side: int) -> Callable[[], Array]:
    def load() -> Array:
        import skimage.data

        return skimage.data.stereo_motorcycle()[side]

    return load


def _sklearn(file: str) -> Callable[[], Array]:
    def load() -> Array:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file)

    return load


def _matplotlib(file: str) -> Callable[[], Array]:
    def load() -> Array:
        from matplotlib import cbook

        with cbook.get_sample_data(file) as handle, Image.open(handle) as image:
            return np.asarray(image.convert("RGB"))

    return load


#: Real photographs that ship inside scikit-image, scikit-learn and matplotlib.
PHOTOS: dict[str, Callable[[], Array]] = {
    "astronaut": _skimage("astronaut"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "china": _sklearn("china.jpg"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "rocket": _skimage("rocket"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "flower": _sklearn("flower.jpg"),
}

#: The fixed split: whole held-out images for validation and test (the stereo pair stays together).
PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut", "immunohistochemistry", "motorcycle_left", "motorcycle_right",
        "hubble_deep_field", "retina", "china", "grace_hopper",
    ),
    "val": ("rocket",),
    "test": ("chelsea", "coffee", "flower"),
}  # fmt: skip


def photo_records(split: str) -> list[ImageRecord]:
    return [ImageRecord(name, PHOTOS[name]()) for name in PHOTO_SPLITS[split]]


# --------------------------------------------------------------------------- folders


def list_images(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if is_image(p))
    if not files:
        raise FileNotFoundError(f"{what}: no images in {str(folder)!r}")
    return files


def find_partner(clean: Path, folder: Path, suffixes: Sequence[str]) -> Path:
    """The file of `folder` named like `clean` (any image extension, optional suffix)."""
    for suffix in ("", *suffixes):
        for candidate in folder.glob(f"{clean.stem}{suffix}.*"):
            if is_image(candidate):
                return candidate
    names = ", ".join(f"{clean.stem}{s}.<ext>" for s in ("", *suffixes))
    raise FileNotFoundError(f"no partner of {clean} in {folder}: looked for {names}")


def split_records(
    records: list[ImageRecord], fractions: tuple[float, float], seed: int
) -> dict[str, list[ImageRecord]]:
    """Split images into train/val/test by (val, test) fractions, at least one image each."""
    if len(records) < 3:
        raise ValueError(
            f"{len(records)} image(s) cannot be split into train, val and test: give at least 3, "
            "or separate folders for val and test"
        )
    index = np.arange(len(records))
    n_test = max(1, round(fractions[1] * len(records)))
    n_val = max(1, round(fractions[0] * len(records)))
    rest, test = train_test_split(index, test_size=n_test, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, random_state=seed)
    return {
        s: [records[i] for i in idx] for s, idx in (("train", train), ("val", val), ("test", test))
    }


def fill_missing_splits(
    records: dict[str, list[ImageRecord]], fractions: tuple[float, float], seed: int
) -> dict[str, list[ImageRecord]]:
    """Carve the val/test splits that have no folder of their own out of train."""
    missing = [s for s in ("val", "test") if s not in records]
    if not missing:
        return records
    carved = split_records(records["train"], fractions, seed)
    kept = [r for s in ("val", "test") if s not in missing for r in carved[s]]
    return {**records, "train": carved["train"] + kept, **{s: carved[s] for s in missing}}


# --------------------------------------------------------------------------- datamodules


class RestorationDataModule(BaseDataModule):
    """Shared plumbing: records per split -> `RestorationPairs`; whole-image evaluation loaders.

    Args:
        in_chans: 3 (RGB) or 1 (grey-scale); every image is converted on read.
        patch_size: Side of a training crop of the network's input (low-resolution or noisy).
        samples_per_epoch: Training crops per epoch.
        eval_size: Centre-crop validation/test inputs to this side (None: whole images).
        **kwargs: See `BaseDataModule`.
    """

    task: ClassVar[str]

    def __init__(
        self,
        in_chans: int = 3,
        patch_size: int = 48,
        samples_per_epoch: int = 1000,
        eval_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (grey-scale) or 3 (RGB), got {in_chans}")
        self._in_chans = in_chans
        self.patch_size, self.samples_per_epoch = patch_size, samples_per_epoch
        self.eval_size = eval_size

    @property
    def in_chans(self) -> int:
        return self._in_chans

    @property
    def task_kwargs(self) -> dict:
        return {"in_chans": self.in_chans, "mean": self.mean, "std": self.std}

    def degradation(self, split: str) -> Degradation:
        raise NotImplementedError

    def records(self) -> dict[str, list[ImageRecord]]:
        """The images of each split: `{"train": [...], "val": [...], "test": [...]}`."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        records = self.records()
        verify_images(
            [
                p
                for rs in records.values()
                for r in rs
                for p in (r.clean, r.degraded)
                if isinstance(p, Path)
            ]
        )
        self._check_sizes(records)
        for split, split_records in records.items():
            self.datasets[split] = RestorationPairs(
                split_records,
                self.degradation(split),
                channels=self.in_chans,
                mean=self.mean,
                std=self.std,
                train=split == "train",
                patch_size=self.patch_size,
                samples_per_epoch=self.samples_per_epoch,
                eval_size=self.eval_size,
                seed=self.seed,
            )

    def _check_sizes(self, records: dict[str, list[ImageRecord]]) -> None:
        """Pair and evaluation sizes from the files' headers, so a bad file fails before training."""
        for split, split_records in records.items():
            scale = self.degradation(split).scale
            for record in split_records:
                if not isinstance(record.clean, Path):
                    continue
                clean = image_size(record.clean)
                if isinstance(record.degraded, Path):
                    check_pair_size(record, clean, image_size(record.degraded), scale)
                if split != "train":
                    check_eval_size(record, clean, scale)

    def _dataloader_factory(self, split: str) -> DataLoader:
        if split == "train":
            return super()._dataloader_factory(split)
        if split not in self.datasets:
            self.setup("fit" if split == "val" else "test")
        # whole images differ in size: one per batch
        return DataLoader(
            self.datasets[split],
            batch_size=1,
            sampler=evaluation_sampler(self.datasets[split], self.trainer),
            num_workers=self.num_workers,
        )


class SuperResolutionDataModule(RestorationDataModule):
    """Super-resolution pairs (bicubic degradation unless low-resolution files are given).

    Args:
        scale: Upscaling factor (2, 3, 4 in the literature).
        **kwargs: See `RestorationDataModule`.
    """

    task = "super_resolution"

    def __init__(self, scale: int = 3, **kwargs):
        super().__init__(**kwargs)
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)

    @property
    def task_kwargs(self) -> dict:
        return {**super().task_kwargs, "scale": self.scale}

    def degradation(self, split: str) -> Degradation:
        return BicubicDownscale(self.scale)


class PhotoSuperResolutionDataModule(SuperResolutionDataModule):
    """Real photographs bundled in scikit-image, scikit-learn and matplotlib, bicubic-degraded.

    Train: 8 photographs (astronaut, immunohistochemistry, the motorcycle stereo pair, Hubble deep
    field, retina, China, Grace Hopper) cropped at random; validation: rocket; test: chelsea,
    coffee, flower, whole. Nothing is downloaded.
    """

    def records(self) -> dict[str, list[ImageRecord]]:
        return {split: photo_records(split) for split in PHOTO_SPLITS}


class FolderSuperResolutionDataModule(SuperResolutionDataModule):
    """High-resolution image folders, DIV2K style, with optional low-resolution folders.

    `hr_dirs` maps splits to folders (relative to `root`); a split without a folder is carved
    out of train by `split_fractions`. `lr_dirs` (optional) maps splits to low-resolution folders,
    where `{scale}` stands for the scale (`DIV2K_train_LR_bicubic/X{scale}`); an LR file is named
    like its HR file, optionally with an `x{scale}` suffix (`0001x3.png`). Without LR folders the
    low-resolution images are made by bicubic downscaling.

    Args:
        root: The data folder.
        hr_dirs: `{split: folder}` of high-resolution images (train required).
        lr_dirs: `{split: folder}` of low-resolution images, or None.
        split_fractions: (val, test) fractions for splits without their own folder.
        **kwargs: See `SuperResolutionDataModule`.
    """

    input_keys = ("root",)

    def __init__(
        self,
        root: str,
        hr_dirs: dict[str, str] | None = None,
        lr_dirs: dict[str, str] | None = None,
        split_fractions: tuple[float, float] = (0.1, 0.1),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.hr_dirs = dict(hr_dirs or {"train": "."})
        self.lr_dirs = dict(lr_dirs or {})
        self.split_fractions = tuple(split_fractions)
        if "train" not in self.hr_dirs:
            raise ValueError(f"hr_dirs needs a 'train' folder, got {self.hr_dirs}")
        self._records = self._scan()

    def _folder_records(self, split: str) -> list[ImageRecord]:
        hr_files = list_images(self.root / self.hr_dirs[split], f"data.hr_dirs.{split}")
        lr_dir = self.lr_dirs.get(split)
        if lr_dir is None:
            return [ImageRecord(str(p), p) for p in hr_files]
        lr_folder = self.root / lr_dir.format(scale=self.scale)
        list_images(lr_folder, f"data.lr_dirs.{split}")
        suffixes = (f"x{self.scale}", f"_x{self.scale}", f"X{self.scale}")
        return [ImageRecord(str(p), p, find_partner(p, lr_folder, suffixes)) for p in hr_files]

    def _scan(self) -> dict[str, list[ImageRecord]]:
        records = {split: self._folder_records(split) for split in self.hr_dirs}
        return fill_missing_splits(records, self.split_fractions, self.seed)

    def records(self) -> dict[str, list[ImageRecord]]:
        return self._records


#: The layouts of the usual benchmark sets, tried in this order for a set folder.
BENCHMARK_LAYOUTS = """\
  <root>/<set>/HR/*.png  [+ <root>/<set>/LR_bicubic/X<scale>/*x<scale>.png]   (EDSR/BasicSR)
  <root>/<set>/image_SRF_<scale>/*_HR.png + *_LR.png                        (SelfExSR)
  <root>/<set>/*.png                                                         (HR images only)"""


def benchmark_records(folder: Path, scale: int) -> list[ImageRecord]:
    """The HR (and LR, where present) images of a benchmark set in any of `BENCHMARK_LAYOUTS`."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"benchmark set {str(folder)!r} does not exist. Expected one of:\n{BENCHMARK_LAYOUTS}"
        )
    if (folder / "HR").is_dir():
        hr_files = list_images(folder / "HR", f"benchmark HR images of {folder.name}")
        lr_folder = folder / "LR_bicubic" / f"X{scale}"
        if not lr_folder.is_dir():
            return [ImageRecord(str(p), p) for p in hr_files]
        return [
            ImageRecord(str(p), p, find_partner(p, lr_folder, (f"x{scale}",))) for p in hr_files
        ]
    srf = folder / f"image_SRF_{scale}"
    if srf.is_dir():
        hr_files = sorted(p for p in srf.iterdir() if is_image(p) and p.stem.endswith("_HR"))
        records = []
        for hr in hr_files:
            lr = hr.with_name(hr.name.replace("_HR", "_LR"))
            records.append(ImageRecord(str(hr), hr, lr if lr.is_file() else None))
        if records:
            return records
    files = sorted(p for p in folder.iterdir() if is_image(p))
    if not files:
        raise FileNotFoundError(
            f"no images found for benchmark set {str(folder)!r} at scale {scale}. Expected one "
            f"of:\n{BENCHMARK_LAYOUTS}"
        )
    return [ImageRecord(str(p), p) for p in files]


class BenchmarkSuperResolutionDataModule(SuperResolutionDataModule):
    """Test on a standard benchmark set (Set5, Set14, BSD100, Urban100, Manga109 ...).

    Training and validation come from an HR folder (`train_root`, DIV2K style: all its images,
    the first `val_fraction` of them, by name, held out for validation) or, when it is None, from
    the embedded photographs. A sweep over `data.benchmark=Set5,Set14,BSD100,Urban100` gives the usual table.

    Args:
        root: Folder holding the benchmark sets.
        benchmark: The set to test on (a sub-folder of `root`).
        train_root: HR training images, or None for the embedded photographs.
        val_fraction: Part of the `train_root` images held out for validation.
        **kwargs: See `SuperResolutionDataModule`.
    """

    input_keys = ("root", "train_root")

    def __init__(
        self,
        root: str,
        benchmark: str = "Set5",
        train_root: str | None = None,
        val_fraction: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root, self.benchmark = Path(root).expanduser(), benchmark
        self.train_root = Path(train_root).expanduser() if train_root else None
        self.val_fraction = val_fraction
        self._test = benchmark_records(self.root / benchmark, self.scale)

    def records(self) -> dict[str, list[ImageRecord]]:
        if self.train_root is None:
            return {
                "train": photo_records("train"),
                "val": photo_records("val"),
                "test": self._test,
            }
        files = list_images(self.train_root, "data.train_root")
        records = [ImageRecord(str(p), p) for p in files]
        n_val = max(1, round(self.val_fraction * len(records)))
        if len(records) <= n_val:
            raise ValueError(f"data.train_root={str(self.train_root)!r} needs at least 2 images")
        return {"train": records[n_val:], "val": records[:n_val], "test": self._test}


class DenoisingDataModule(RestorationDataModule):
    """Denoising pairs (synthetic Gaussian noise unless noisy files are given).

    Args:
        sigma: Noise level on the 0-255 scale (15, 25, 50 in the literature); the evaluation level.
        blind: Train on a sigma drawn per image from `blind_range` (one model for all levels).
        blind_range: The (low, high) sigma range of blind training (DnCNN-B: 0 to 55).
        **kwargs: See `RestorationDataModule`.
    """

    task = "denoising"

    def __init__(
        self,
        sigma: float = 25.0,
        blind: bool = False,
        blind_range: tuple[float, float] = (0.0, 55.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
        self.sigma, self.blind, self.blind_range = float(sigma), blind, tuple(blind_range)

    def degradation(self, split: str) -> Degradation:
        if self.blind and split == "train":
            return BlindGaussianNoise(*self.blind_range)
        return GaussianNoise(self.sigma)


class PhotoDenoisingDataModule(DenoisingDataModule):
    """The embedded photographs (see `PhotoSuperResolutionDataModule`) with Gaussian noise."""

    def records(self) -> dict[str, list[ImageRecord]]:
        return {split: photo_records(split) for split in PHOTO_SPLITS}


def noisy_clean_pairs(folder: Path, noisy_dir: str, clean_dir: str) -> list[ImageRecord]:
    """Pairs in `folder`: `<noisy_dir>/x` with `<clean_dir>/x`, or SIDD's `NOISY_*` / `GT_*`."""
    if (folder / noisy_dir).is_dir() and (folder / clean_dir).is_dir():
        noisy = list_images(folder / noisy_dir, f"noisy images ({noisy_dir}/)")
        return [ImageRecord(str(n), find_partner(n, folder / clean_dir, ()), n) for n in noisy]
    records = []
    for noisy in sorted(p for p in folder.rglob("*") if is_image(p)):
        if noisy.name.upper().startswith("NOISY"):
            clean = noisy.with_name("GT" + noisy.name[len("NOISY") :])
            if not clean.is_file():
                raise FileNotFoundError(f"no clean partner of {noisy}: expected {clean}")
            records.append(ImageRecord(str(noisy), clean, noisy))
    if not records:
        raise FileNotFoundError(
            f"no noisy/clean pairs in {str(folder)!r}. Expected {noisy_dir}/<name> with "
            f"{clean_dir}/<name>, or SIDD's layout: <scene>/NOISY_<x>.PNG with <scene>/GT_<x>.PNG"
        )
    return records


class NoisyPairsDataModule(DenoisingDataModule):
    """Real noisy/clean pairs: SIDD-like scene folders, or parallel noisy/ and clean/ folders.

    `root/{train,val,test}/` are used as splits when present (each in either layout); otherwise
    all pairs under `root` are split by `split_fractions`. SIDD's full-size images are large: set
    `eval_size` (e.g. 256) to evaluate centre crops.

    Args:
        root: The data folder.
        noisy_dir: Name of the noisy-image folder in the parallel-folder layout.
        clean_dir: Name of the clean-image folder.
        split_fractions: (val, test) fractions when `root` has no split folders.
        **kwargs: See `DenoisingDataModule` (`sigma` is unused: the noise is real).
    """

    input_keys = ("root",)

    def __init__(
        self,
        root: str,
        noisy_dir: str = "noisy",
        clean_dir: str = "clean",
        split_fractions: tuple[float, float] = (0.1, 0.1),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} does not exist or is not a folder"
            )
        self.noisy_dir, self.clean_dir = noisy_dir, clean_dir
        self.split_fractions = tuple(split_fractions)
        self._records = self._scan()

    def _scan(self) -> dict[str, list[ImageRecord]]:
        split_dirs = [s for s in ("train", "val", "test") if (self.root / s).is_dir()]
        if "train" not in split_dirs:
            pairs = noisy_clean_pairs(self.root, self.noisy_dir, self.clean_dir)
            return split_records(pairs, self.split_fractions, self.seed)
        records = {
            s: noisy_clean_pairs(self.root / s, self.noisy_dir, self.clean_dir) for s in split_dirs
        }
        return fill_missing_splits(records, self.split_fractions, self.seed)

    def records(self) -> dict[str, list[ImageRecord]]:
        return self._records


__all__ = [
    "BenchmarkSuperResolutionDataModule",
    "DenoisingDataModule",
    "FolderSuperResolutionDataModule",
    "NoisyPairsDataModule",
    "PhotoDenoisingDataModule",
    "PhotoSuperResolutionDataModule",
    "SuperResolutionDataModule",
]
