"""Object detection data: shapes pasted on photographs (the default), COCO json, Pascal VOC XML.

Every datamodule yields batches `{"image": (B, C, H, W) float, "boxes": [(N_i, 4) float xyxy
in pixels], "labels": [(N_i,) long]}` through `collate_detection`: images are fitted into
`image_size` squares, so they stack, and each image keeps its own number of boxes. Labels are
0..num_classes-1, in the order of `class_names`.

Boxes of real annotations are sanitised the same way for every format (see `sanitize_boxes`):
boxes that cross the image border are clipped to it; boxes with no area after clipping
(width or height below one pixel) are dropped; both are counted and logged per file. A
category id (COCO) or class name (VOC) that is not in the class list is an error naming the
file, as it means the class list and the annotations disagree.
"""

import json
import logging
import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset

from .base import BaseDataModule, Compose, DataError, reading
from .images import image_size, read_image, verify_images
from .synth.paste import SHAPES, ShapesOnPhotos

log = logging.getLogger(__name__)

VOC_DETECTION_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip


class AnnotationError(DataError):
    """Annotations that disagree with the class list or with their images."""


def sanitize_boxes(
    boxes: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Clip xyxy `boxes` to the image; drop those left without area.

    Returns:
        The kept boxes, the mask of kept rows, how many were clipped, how many dropped.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    clipped = boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
    keep = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    n_clipped = int((np.abs(clipped - boxes).sum(1) > 0)[keep].sum())
    return clipped[keep], keep, n_clipped, int((~keep).sum())


def _log_sanitized(source: Path, clipped: int, dropped: int, skipped: str = "") -> None:
    if clipped or dropped or skipped:
        log.warning(
            f"{source}: clipped {clipped} box(es) crossing the image border, dropped {dropped} "
            f"box(es) with no area inside the image{skipped}"
        )


def collate_detection(samples: list[dict]) -> dict:
    """Stack equal-size images; keep boxes and labels as per-image lists."""
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "boxes": [s["boxes"] for s in samples],
        "labels": [s["labels"] for s in samples],
    }


def _sample(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
            transform: A.Compose) -> dict[str, torch.Tensor]:  # fmt: skip
    out = transform(image=image, bboxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                    labels=np.asarray(labels, np.int64))  # fmt: skip
    return {
        "image": out["image"],
        "boxes": torch.as_tensor(np.asarray(out["bboxes"], np.float32).reshape(-1, 4)),
        "labels": torch.as_tensor(np.asarray(out["labels"], np.int64).reshape(-1)),
    }


class ArrayDetectionDataset(Dataset):
    """Images (N, H, W, C) uint8 in memory, with per-image boxes and labels."""

    def __init__(self, images: np.ndarray, boxes: Sequence[np.ndarray],
                 labels: Sequence[np.ndarray], transform: A.Compose):  # fmt: skip
        self.images, self.boxes, self.labels, self.transform = images, boxes, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return _sample(self.images[index], self.boxes[index], self.labels[index], self.transform)


class FileDetectionDataset(Dataset):
    """Image files with boxes and labels parsed beforehand; the image size is checked on read.

    Args:
        records: `(path, (width, height), boxes, labels)` per image.
        transform: Albumentations pipeline with `bbox_params`.
        in_chans: 3 (RGB) or 1 (grey-scale).
    """

    def __init__(self, records: Sequence[tuple[Path, tuple[int, int], np.ndarray, np.ndarray]],
                 transform: A.Compose, in_chans: int = 3):  # fmt: skip
        self.records, self.transform, self.in_chans = list(records), transform, in_chans

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, size, boxes, labels = self.records[index]
        with reading(path):
            image = read_image(path, self.in_chans)
            check_image_size(path, (image.shape[1], image.shape[0]), size)
            return _sample(image, boxes, labels, self.transform)


def check_image_size(path: Path, actual: tuple[int, int], annotated: tuple[int, int]) -> None:
    if tuple(actual) != tuple(annotated):
        raise AnnotationError(
            f"{path}: the image is {actual[0]}x{actual[1]} (WxH) but its annotation says "
            f"{annotated[0]}x{annotated[1]}"
        )


class DetectionDataModule(BaseDataModule):
    """Shared transforms, collate function and task interface for detection data.

    Images are fitted into `image_size` squares (longest side resized, then padded at the
    bottom/right, so boxes only scale). Training adds a random zoom, flips and photometric
    jitter; albumentations moves the boxes with the image, clips them to it and drops a box
    when less than `min_visibility` of it stays in view.

    Args:
        image_size: Side of the square the model sees.
        scale: Range of the random zoom of training images (1: none).
        hflip: Probability of a horizontal flip in training.
        vflip: Probability of a vertical flip in training.
        min_visibility: Smallest fraction of a box that must stay in view after augmentation.
        **kwargs: See `BaseDataModule`.
    """

    task = "detection"
    collate_fn = staticmethod(collate_detection)

    def __init__(self, image_size: int = 128, scale: tuple[float, float] = (0.75, 1.25),
                 hflip: float = 0.5, vflip: float = 0.0, min_visibility: float = 0.3,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.image_size, self.scale = image_size, tuple(scale)
        self.hflip, self.vflip, self.min_visibility = hflip, vflip, min_visibility
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
            "image_size": self.image_size,
        }

    def transform(self, train: bool) -> A.Compose:
        size = self.image_size
        ops: list[A.BasicTransform] = [
            A.LongestMaxSize(max_size=size),
            A.PadIfNeeded(size, size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0),
        ]
        if train:
            ops += [
                A.Affine(scale=self.scale, fill=0, p=float(self.scale != (1, 1))),
                A.HorizontalFlip(p=self.hflip),
                A.VerticalFlip(p=self.vflip),
                A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.5),
            ]
        ops += [A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0), ToTensorV2()]
        boxes = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_area=1.0,
                             min_visibility=self.min_visibility if train else 0.0, clip=True,
                             filter_invalid_bboxes=True)  # fmt: skip
        return Compose(ops, bbox_params=boxes)


class ShapesOnPhotosDataModule(DetectionDataModule):
    """Synthetic scenes: textured shapes with exact boxes on crops of bundled photographs.

    See `data.synth.paste`. Scenes are made once in `setup`, each split from its own seed, so
    the validation and test sets are fixed whatever the training size.

    Args:
        train_size: Training scenes (augmented on every epoch).
        val_size: Validation scenes.
        test_size: Test scenes.
        classes: Shapes to detect, a subset of disc, triangle, ring, cross.
        objects: Range of objects per scene.
        object_scale: Range of an object's side as a fraction of the image side.
        **kwargs: See `DetectionDataModule`.
    """

    def __init__(self, train_size: int = 1500, val_size: int = 150, test_size: int = 300,
                 classes: Sequence[str] = SHAPES, objects: tuple[int, int] = (1, 6),
                 object_scale: tuple[float, float] = (0.1, 0.45), **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.class_names = list(classes)
        self.objects, self.object_scale = tuple(objects), tuple(object_scale)

    @property
    def in_chans(self) -> int:
        return 3

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        scenes = ShapesOnPhotos(self.image_size, tuple(self.class_names), self.objects,
                                self.object_scale)  # fmt: skip
        for offset, split in enumerate(("train", "val", "test")):
            images, boxes, labels = scenes.generate(self.sizes[split], 1000 * self.seed + offset)
            self.datasets[split] = ArrayDetectionDataset(
                images, boxes, labels, self.transform(split == "train")
            )


class _FileDetectionDataModule(DetectionDataModule):
    """Datamodules over annotated image files: `_records(split)` gives each split's records."""

    input_keys = ("root",)

    def __init__(self, root: str, in_chans: int = 3, verify: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} does not exist or is not a folder"
            )
        self._in_chans, self.verify = in_chans, verify
        self.records: dict[str, list] = {}

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.verify:
            sizes = {r[0]: r[1] for records in self.records.values() for r in records}
            verify_images(sorted(sizes))
            # the header holds the size: a wrong annotation fails here, not in a loader worker
            for path, size in sizes.items():
                check_image_size(path, image_size(path), size)
        for split, records in self.records.items():
            self.datasets[split] = FileDetectionDataset(
                records, self.transform(split == "train"), self.in_chans
            )


#: What each COCO entry must hold, and a check of its values (all must pass).
COCO_FIELDS = {
    "categories": ("id", "name"),
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("image_id", "category_id", "bbox"),
}


def _is_box(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
    )


def _check_coco_entries(path: Path, data: dict) -> None:
    """Every entry has its fields, sizes are positive integers and boxes 4 finite numbers."""
    if not data["categories"]:
        raise AnnotationError(f"{path}: no categories; a detector needs at least one class")
    for key, fields in COCO_FIELDS.items():
        for position, entry in enumerate(data[key]):
            where = f"{path}: {key}[{position}]"
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise AnnotationError(f"{where} has no {', '.join(map(repr, missing))}")
            if key == "images" and not all(
                isinstance(entry[k], int) and entry[k] > 0 for k in ("width", "height")
            ):
                raise AnnotationError(
                    f"{where} (id {entry['id']}): width {entry['width']!r} and height "
                    f"{entry['height']!r} must be positive integers"
                )
            if key == "annotations" and not _is_box(entry["bbox"]):
                raise AnnotationError(
                    f"{where} (id {entry.get('id')}): bbox {entry['bbox']!r} is not 4 finite "
                    "numbers [x, y, width, height]"
                )


def read_coco(path: Path, image_root: Path) -> tuple[list[str], list[int], list]:
    """Parse a COCO instances json into class names, category ids and per-image records.

    Category ids are mapped to labels 0..K-1 in increasing id order. Crowd annotations are
    skipped; boxes are sanitised (clipped, degenerate ones dropped) and the counts logged.

    Raises:
        AnnotationError: an annotation's category id is not among the json's categories, or
            an annotation refers to an image id that the json does not list.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(f"cannot read COCO annotations {path}: {error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or key not in data:
            raise AnnotationError(f"{path}: not a COCO instances file (no {key!r} key)")
        if not isinstance(data[key], list):
            raise AnnotationError(f"{path}: {key!r} is a {type(data[key]).__name__}, not a list")
    _check_coco_entries(path, data)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    label_of = {cat_id: i for i, cat_id in enumerate(ids)}
    unknown = sorted({a["category_id"] for a in data["annotations"]} - set(label_of))
    if unknown:
        raise AnnotationError(
            f"{path}: annotations use category id(s) {unknown} that are not in its categories "
            f"(ids {ids}); fix the annotations or add the categories"
        )
    images = {im["id"]: im for im in data["images"]}
    per_image = defaultdict(list)
    for annotation in data["annotations"]:
        if annotation["image_id"] not in images:
            raise AnnotationError(
                f"{path}: annotation {annotation.get('id')} refers to image id "
                f"{annotation['image_id']}, which is not in its images"
            )
        per_image[annotation["image_id"]].append(annotation)
    records, clipped, dropped, crowd = [], 0, 0, 0
    for image_id, image in images.items():
        kept = [a for a in per_image[image_id] if not a.get("iscrowd", 0)]
        crowd += len(per_image[image_id]) - len(kept)
        xywh = np.array([a["bbox"] for a in kept], np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        labels = np.array([label_of[a["category_id"]] for a in kept], np.int64)
        boxes, keep, n_clipped, n_dropped = sanitize_boxes(xyxy, image["width"], image["height"])
        clipped, dropped = clipped + n_clipped, dropped + n_dropped
        records.append((image_root / image["file_name"], (image["width"], image["height"]),
                        boxes, labels[keep]))  # fmt: skip
    _log_sanitized(
        path, clipped, dropped, f", skipped {crowd} crowd annotation(s)" if crowd else ""
    )
    return [c["name"] for c in categories], ids, records


class COCODataModule(_FileDetectionDataModule):
    """COCO-format detection: instances json files and an image folder.

    Splits: `train_json`, `val_json` and `test_json` (None: the val split is also the test
    split). Paths are relative to `root` unless absolute; `file_name` entries are relative to
    `image_root` (default: `root`). Every split must list the same categories.

    Args:
        root: The data folder.
        train_json: Training annotations.
        val_json: Validation annotations.
        test_json: Test annotations, or None.
        image_root: Folder that `file_name` entries are relative to (default `root`).
        in_chans: 3 (RGB) or 1 (grey-scale).
        verify: Decode every image header in `setup`, so a corrupt file fails early.
        **kwargs: See `DetectionDataModule`.
    """

    def __init__(self, root: str, train_json: str, val_json: str, test_json: str | None = None,
                 image_root: str | None = None, **kwargs):  # fmt: skip
        super().__init__(root, **kwargs)
        images = self.root / image_root if image_root else self.root
        splits = {"train": train_json, "val": val_json, "test": test_json or val_json}
        categories = None
        for split, name in splits.items():
            path = self.root / name
            if not path.is_file():
                raise FileNotFoundError(f"data.{split}_json: no annotation file at {path}")
            names, ids, self.records[split] = read_coco(path, images)
            if categories is None:
                categories, self.class_names = (ids, names), names
            elif (ids, names) != categories:
                raise AnnotationError(
                    f"{path}: its categories {list(zip(ids, names))} differ from the training "
                    f"file's {list(zip(*categories))}; every split needs the same categories"
                )


def _voc_number(path: Path, element: ET.Element, key: str) -> float:
    text = element.findtext(key)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise AnnotationError(f"{path}: <{key}> is {text!r}, expected a finite number")
    return value


def read_voc_xml(path: Path, image_dir: Path, class_names: Sequence[str],
                 include_difficult: bool = False) -> tuple:  # fmt: skip
    """Parse one Pascal VOC annotation into a record; returns it and (clipped, dropped) counts.

    VOC corners are 1-based pixel indices; they become 0-based pixel edges.

    Raises:
        AnnotationError: an object's class name is not in `class_names`.
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise AnnotationError(f"cannot read VOC annotation {path}: {error}") from error
    width, height = (int(_voc_number(path, root, f"size/{k}")) for k in ("width", "height"))
    if width < 1 or height < 1:
        raise AnnotationError(f"{path}: image size {width}x{height} is not positive")
    boxes, labels = [], []
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip()
        if name not in class_names:
            raise AnnotationError(
                f"{path}: object class {name!r} is not in the class list ({', '.join(class_names)}); "
                "set data.classes to the data's classes"
            )
        if not include_difficult and obj.findtext("difficult", "0").strip() == "1":
            continue
        x0, y0, x1, y1 = (
            _voc_number(path, obj, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")
        )
        boxes.append([x0 - 1, y0 - 1, x1, y1])
        labels.append(class_names.index(name))
    kept, keep, clipped, dropped = sanitize_boxes(np.array(boxes), width, height)
    filename = root.findtext("filename") or f"{path.stem}.jpg"
    record = (image_dir / filename, (width, height), kept, np.array(labels, np.int64)[keep])
    return record, clipped, dropped


class VOCDetectionDataModule(_FileDetectionDataModule):
    """The Pascal VOC layout: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/{split}.txt`.

    Splits come from `train.txt` and `val.txt`; `test.txt` is used when its annotations exist
    (VOC2007 ships them), otherwise the val split is also the test split. Objects marked
    `difficult` are left out unless `include_difficult`.

    Args:
        root: The folder holding `Annotations/` (e.g. `VOCdevkit/VOC2007`).
        classes: Class names; VOC's 20 by default.
        include_difficult: Keep objects marked difficult.
        **kwargs: See `DetectionDataModule`.
    """

    def __init__(self, root: str, classes: Sequence[str] = tuple(VOC_DETECTION_CLASSES),
                 include_difficult: bool = False, **kwargs):  # fmt: skip
        super().__init__(root, **kwargs)
        self.class_names = list(classes)
        lists = self.root / "ImageSets" / "Main"
        if not (self.root / "Annotations").is_dir() or not lists.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} is not a Pascal VOC folder: it needs Annotations/, "
                "JPEGImages/ and ImageSets/Main/ (point it at VOCdevkit/VOC2007)"
            )
        for split in ("train", "val", "test"):
            path = lists / f"{split}.txt"
            if not path.is_file():
                continue
            ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
            xmls = [self.root / "Annotations" / f"{i}.xml" for i in ids]
            if split == "test" and not all(p.is_file() for p in xmls):
                continue
            records, clipped, dropped = [], 0, 0
            for xml in xmls:
                if not xml.is_file():
                    raise FileNotFoundError(f"{path} lists {xml.stem}, but {xml} does not exist")
                record, c, d = read_voc_xml(xml, self.root / "JPEGImages", self.class_names,
                                            include_difficult)  # fmt: skip
                records.append(record)
                clipped, dropped = clipped + c, dropped + d
            _log_sanitized(path, clipped, dropped)
            self.records[split] = records
        if "train" not in self.records or "val" not in self.records:
            raise FileNotFoundError(f"{lists} needs train.txt and val.txt")
        self.records.setdefault("test", self.records["val"])
