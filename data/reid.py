"""Person re-identification data: the Market-1501 layout (real or synthetic pedestrians).

`Scalable Person Re-identification: A Benchmark` (Zheng et al., ICCV 2015): Market-1501 ships
`bounding_box_train/`, `query/` and `bounding_box_test/` folders of crops named
`<pid>_c<camera>s<sequence>_<frame>_<box>.jpg` (`0002_c1s1_000451_03.jpg`); pid -1 marks junk
detections (ignored by the protocol) and pid 0 distractors. DukeMTMC-reID uses the same folders
with names like `0001_c2_f0046182.jpg`, which the same reader parses.

Batches: `{"image": (B, C, H, W), "pid", "camid", "label" (training class, -1 outside training),
"is_query", "index"}`. Training batches are P identities x K images, drawn by
pytorch-metric-learning's `MPerClassSampler` (the PK sampler of Hermans et al. 2017, arXiv
1703.07737). The validation query/gallery are identities carved out of the training set, so the
test identities are never seen before testing.
"""

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import DataLoader, Dataset

from .base import BaseDataModule, Compose, DataError, evaluation_sampler, reading
from .images import IMAGE_SUFFIXES, is_image, read_image, verify_images
from .synth.pedestrians import write_market1501

log = logging.getLogger(__name__)

#: `<pid>_c<camera>` then anything: Market-1501 (`0002_c1s1_000451_03`), DukeMTMC (`0001_c2_f...`)
NAME_PATTERN = re.compile(r"^(-1|\d+)_c(\d+)(?:s\d+)?_[^/]*$")
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


class EpochwisePKSampler(MPerClassSampler):
    """`MPerClassSampler` whose epochs depend on numpy's global generator alone.

    The parent shuffles its identity list in place, so each epoch starts from the previous
    epoch's order: a run resumed from a checkpoint (a fresh sampler, the saved generator state)
    would draw other batches than the run that never stopped. Each epoch here starts from the
    identities' first-seen order.
    """

    def __iter__(self) -> Iterator[int]:
        self.labels = list(self.labels_to_indices)
        return super().__iter__()


class ReIDFileNameError(DataError):
    """A file whose name does not carry `<pid>_c<camera>`."""


@dataclass(frozen=True)
class Record:
    path: Path
    pid: int
    camid: int


def parse_name(path: Path) -> tuple[int, int]:
    """(pid, camera) of a Market-1501 / DukeMTMC-reID file name; camera ids start at 1."""
    match = NAME_PATTERN.match(path.stem)
    if match is None or int(match.group(2)) < 1:
        raise ReIDFileNameError(
            f"{path}: file name does not follow the Market-1501 pattern "
            "<pid>_c<camera>s<seq>_<frame>_<box>.jpg (e.g. 0002_c1s1_000451_03.jpg; pid -1 for "
            "junk, 0 for distractors) or DukeMTMC's <pid>_c<camera>_f<frame>.jpg"
        )
    return int(match.group(1)), int(match.group(2))


def read_folder(folder: Path) -> list[Record]:
    """Every image of a Market-1501 split folder, parsed; an unparsable name is an error."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No Market-1501 folder at {str(folder)!r}: data.root must hold bounding_box_train/, "
            "query/ and bounding_box_test/ (download Market-1501-v15.09.15 from the authors' "
            "page, unzip it and set data.root=<that folder>)"
        )
    records = [Record(p, *parse_name(p)) for p in sorted(folder.iterdir()) if is_image(p)]
    if not records:
        raise DataError(f"{folder}: no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    return records


class ReIDDataset(Dataset):
    """Records read on access, through albumentations; `labels` are training classes or -1."""

    def __init__(self, records: list[Record], labels: list[int], is_query: list[bool],
                 transform: A.Compose, in_chans: int = 3):  # fmt: skip
        self.records, self.labels, self.is_query = records, labels, is_query
        self.transform, self.in_chans = transform, in_chans

    def __len__(self) -> int:
        return len(self.records)

    def raw_image(self, index: int) -> np.ndarray:
        return read_image(self.records[index].path, self.in_chans)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        with reading(record.path):
            image = self.transform(image=self.raw_image(index))["image"]
        return {
            "image": image,
            "pid": torch.tensor(record.pid),
            "camid": torch.tensor(record.camid),
            "label": torch.tensor(self.labels[index]),
            "is_query": torch.tensor(self.is_query[index]),
            "index": torch.tensor(index),
        }


def _eval_dataset(query: list[Record], gallery: list[Record], transform: A.Compose,
                  in_chans: int) -> ReIDDataset:  # fmt: skip
    # identities stay together (queries first), distractors last: any first batch can score
    items = [(r, True) for r in query] + [(r, False) for r in gallery]
    items.sort(key=lambda item: (item[0].pid <= 0, item[0].pid, not item[1]))
    return ReIDDataset([r for r, _ in items], [-1] * len(items), [q for _, q in items],
                       transform, in_chans)  # fmt: skip


class ReIDDataModule(BaseDataModule):
    """Market-1501-layout folders -> PK training batches, validation and test query/gallery.

    Args:
        root: Folder with `bounding_box_train/`, `query/`, `bounding_box_test/`.
        test_root: Another such folder to test on (cross-domain); None tests on `root`.
        image_size: Height of the crops the model sees.
        aspect_ratio: Width / height (Market-1501 crops are 1:2).
        ids_per_batch: P, identities per training batch.
        images_per_id: K, images of each identity per training batch.
        val_ids: Training identities carved out as the validation query/gallery.
        augment: Training augmentation (flip, pad-and-crop, random erasing) or none.
        verify: Decode every image header before training (a corrupt file fails by name).
        in_chans: 3 (RGB) or 1.
        **kwargs: See `BaseDataModule`; `batch_size` is the evaluation batch size.
    """

    task = "reid"

    def __init__(
        self,
        root: str,
        test_root: str | None = None,
        image_size: int = 128,
        aspect_ratio: float = 0.5,
        ids_per_batch: int = 16,
        images_per_id: int = 4,
        val_ids: int = 30,
        augment: bool = True,
        verify: bool = True,
        in_chans: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser() if root else None
        self.test_root = Path(test_root).expanduser() if test_root else None
        self.image_size, self.aspect_ratio = image_size, aspect_ratio
        self.ids_per_batch, self.images_per_id = ids_per_batch, images_per_id
        self.val_ids, self.augment, self.verify = val_ids, augment, verify
        self._in_chans = in_chans
        self.num_train_ids = 0
        self._train_labels: list[int] = []

    @property
    def in_chans(self) -> int:
        return self._in_chans

    @property
    def size(self) -> tuple[int, int]:
        return self.image_size, max(1, round(self.image_size * self.aspect_ratio))

    @property
    def num_classes(self) -> int:
        if not self.num_train_ids:
            self._split_train(read_folder(self._root() / SPLIT_FOLDERS["train"]))
        return self.num_train_ids

    @property
    def task_kwargs(self) -> dict:
        return {"in_chans": self.in_chans, "num_classes": self.num_classes,
                "input_size": self.size}  # fmt: skip

    def _root(self) -> Path:
        return self.root

    def _test_root(self) -> Path:
        return self.test_root or self._root()

    def transform(self, train: bool) -> A.Compose:
        h, w = self.size
        ops: list[A.BasicTransform] = [A.Resize(h, w)]
        if train and self.augment:
            # the strong-baseline recipe (Luo et al. 2019, arXiv 1903.07071): flip, 10 px pad
            # and random crop at 256x128 (scaled to this size), random erasing
            pad = max(1, round(10 * h / 256))
            ops += [
                A.HorizontalFlip(),
                A.PadIfNeeded(h + 2 * pad, w + 2 * pad, border_mode=0),
                A.RandomCrop(h, w),
                A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.2, 0.4),
                                hole_width_range=(0.2, 0.5), fill="random_uniform", p=0.5),
            ]  # fmt: skip
        ops += [A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0), ToTensorV2()]
        return Compose(ops)

    def _split_train(
        self, records: list[Record]
    ) -> tuple[list[Record], list[Record], list[Record]]:
        """Training records (labelled 0..N-1), and the validation query and gallery."""
        records = [r for r in records if r.pid > 0]
        pids = sorted({r.pid for r in records})
        if len(pids) < 2:
            raise ValueError(f"{self._root()}: bounding_box_train/ needs at least 2 identities")
        rng = np.random.default_rng(self.seed)
        n_val = min(self.val_ids, len(pids) // 2)
        val_pids = set(rng.choice(pids, size=n_val, replace=False).tolist()) if n_val else set()
        train_pids = [p for p in pids if p not in val_pids]
        label = {p: i for i, p in enumerate(train_pids)}
        self.num_train_ids = len(train_pids)
        train = [r for r in records if r.pid in label]
        self._train_labels = [label[r.pid] for r in train]
        # validation: the first image of each (identity, camera) is a query, the rest gallery
        query, gallery, seen = [], [], set()
        for r in records:
            if r.pid in val_pids:
                (gallery if (r.pid, r.camid) in seen else query).append(r)
                seen.add((r.pid, r.camid))
        return train, query, gallery

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train, val_query, val_gallery = self._split_train(
            read_folder(self._root() / SPLIT_FOLDERS["train"])
        )
        test_query = read_folder(self._test_root() / SPLIT_FOLDERS["query"])
        test_gallery = read_folder(self._test_root() / SPLIT_FOLDERS["gallery"])
        junk = sum(r.pid < 0 for r in test_gallery)
        test_query = [r for r in test_query if r.pid > 0]
        if not test_query:
            raise DataError(
                f"{self._test_root() / SPLIT_FOLDERS['query']}: no query of a person (pid > 0): "
                "every query file is junk (-1) or a distractor (0)"
            )
        if self.verify:
            verify_images([r.path for r in train + val_query + val_gallery + test_query
                           + test_gallery])  # fmt: skip
        counts = np.bincount(self._train_labels, minlength=self.num_train_ids)
        log.info(
            "re-ID data: %d training identities (%d images; %d with a single image, kept for the "
            "classifier and skipped by the PK sampler), validation %d query / %d gallery, test "
            "%d query / %d gallery (%d junk)",
            self.num_train_ids, len(train), int((counts == 1).sum()), len(val_query),
            len(val_gallery), len(test_query), len(test_gallery), junk,
        )  # fmt: skip
        self.datasets["train"] = ReIDDataset(train, self._train_labels, [False] * len(train),
                                             self.transform(True), self.in_chans)  # fmt: skip
        evaluation = self.transform(False)
        self.datasets["val"] = _eval_dataset(val_query, val_gallery, evaluation, self.in_chans)
        self.datasets["test"] = _eval_dataset(test_query, test_gallery, evaluation, self.in_chans)

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.datasets:
            self.setup("fit")
        dataset = self.datasets["train"]
        labels = np.asarray(self._train_labels)
        counts = np.bincount(labels, minlength=self.num_train_ids)
        # identities with a single image cannot give a positive pair: the sampler skips them
        keep = np.nonzero(counts[labels] > 1)[0]
        batch = self.ids_per_batch * self.images_per_id
        if len(np.unique(labels[keep])) < self.ids_per_batch:
            raise ValueError(
                f"data.ids_per_batch={self.ids_per_batch} but only "
                f"{len(np.unique(labels[keep]))} training identities have two or more images"
            )
        sampler = EpochwisePKSampler(labels[keep], m=self.images_per_id, batch_size=batch,
                                   length_before_new_iter=max(batch, len(keep)))  # fmt: skip
        subset = torch.utils.data.Subset(dataset, keep.tolist())
        return DataLoader(subset, batch_size=batch, sampler=sampler, drop_last=True,
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def _dataloader_factory(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup("fit" if split == "val" else "test")
        return DataLoader(self.datasets[split], batch_size=self.batch_size,
                          sampler=evaluation_sampler(self.datasets[split], self.trainer),
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip


class Market1501DataModule(ReIDDataModule):
    """Market-1501 or DukeMTMC-reID at `root` (see `ReIDDataModule`)."""

    input_keys = ("root", "test_root")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convzoo" / "pedestrians"


class SyntheticPedestriansDataModule(ReIDDataModule):
    """Synthetic pedestrians (data/synth/pedestrians.py), written once in the Market-1501 layout.

    Args:
        train_ids: Training identities (validation identities are carved out of them).
        test_ids: Test identities (disjoint from training).
        cameras: Cameras of each domain.
        images_per_camera: (min, max) shots of an identity per camera that sees it.
        distractors: Gallery people of no query identity (pid 0).
        domain: The camera domain trained on ('a' or 'b').
        test_domain: The domain tested on; None for `domain` (same-domain).
        root: Where the sets are written; None for ~/.cache/convzoo/pedestrians/<parameters>.
        **kwargs: See `ReIDDataModule`.
    """

    cache_keys = ("root",)

    def __init__(
        self,
        train_ids: int = 300,
        test_ids: int = 300,
        cameras: int = 6,
        images_per_camera: tuple[int, int] = (1, 3),
        distractors: int = 100,
        domain: str = "a",
        test_domain: str | None = None,
        root: str | None = None,
        **kwargs,
    ):
        for key, value in (("domain", domain), ("test_domain", test_domain or domain)):
            if value not in ("a", "b"):
                raise ValueError(f"data.{key} must be 'a' or 'b', got {value!r}")
        super().__init__(root=root, **kwargs)
        self.spec = dict(train_ids=train_ids, test_ids=test_ids, cameras=cameras,
                         images_per_camera=tuple(images_per_camera), distractors=distractors,
                         size=self.size, seed=self.seed)  # fmt: skip
        self.domain, self.test_domain = domain, test_domain or domain

    def _folder(self, domain: str) -> Path:
        key = json.dumps({**self.spec, "domain": domain}, sort_keys=True)
        name = f"{domain}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        return (self.root or _cache_dir()) / name

    def prepare_data(self) -> None:
        for domain in {self.domain, self.test_domain}:
            write_market1501(self._folder(domain), domain=domain, **self.spec)

    def _root(self) -> Path:
        self.prepare_data()  # no-op once written
        return self._folder(self.domain)

    def _test_root(self) -> Path:
        self.prepare_data()
        return self._folder(self.test_domain)
