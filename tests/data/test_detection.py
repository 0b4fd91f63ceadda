"""Detection datamodules: pasted shapes, augmentation of boxes, collate, COCO and VOC parsing."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

import data.synth.paste as paste
from data.detection import (
    AnnotationError,
    COCODataModule,
    ShapesOnPhotosDataModule,
    VOCDetectionDataModule,
    read_voc_xml,
    sanitize_boxes,
)
from data.synth.paste import ShapesOnPhotos

TINY = dict(train_size=8, val_size=4, test_size=4, image_size=64, batch_size=4)


def test_boxes_are_the_visible_extent_after_occlusion(monkeypatch):
    generator = ShapesOnPhotos(64, objects=(5, 6), object_scale=(0.3, 0.5), min_visible=0.4)
    # each object a flat colour of its own on black, so that its visible pixels can be found
    colours = iter(range(1, 256))
    monkeypatch.setattr(generator, "crop", lambda rng: np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(
        paste, "texture", lambda size, rng: np.full((size, size, 3), float(next(colours)))
    )
    areas = []
    place = generator._place

    def recording_place(mask, *args, **kwargs):
        where = place(mask, *args, **kwargs)
        if where is not None:
            areas.append(int(mask.sum()))
        return where

    monkeypatch.setattr(generator, "_place", recording_place)
    rng = np.random.default_rng(0)
    occluded = 0
    for _ in range(8):
        areas.clear()
        image, boxes, labels = generator.scene(rng)
        values = np.unique(image[..., 0][image[..., 0] > 0])
        assert len(boxes) == len(labels) == len(areas) >= 1
        for box, value, area in zip(boxes, sorted(values)[-len(boxes) :], areas):
            ys, xs = np.nonzero(image[..., 0] == value)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert len(xs) >= 0.4 * area  # no object hidden beyond min_visible
            occluded += len(xs) < area
    assert occluded > 0  # occlusion did happen, and the boxes above followed it


def test_occlusion_keeps_earlier_objects_visible(monkeypatch):
    generator = ShapesOnPhotos(64, objects=(6, 6), object_scale=(0.4, 0.45), min_visible=0.5)
    monkeypatch.setattr(generator, "crop", lambda rng: np.zeros((64, 64, 3), np.uint8))
    images, boxes, labels = generator.generate(20, seed=0)
    counts = [len(b) for b in boxes]
    assert max(counts) <= 6 and min(counts) >= 1
    assert all(((b[:, 2:] - b[:, :2]) >= 1).all() for b in boxes)


def test_val_and_test_are_fixed_by_the_seed():
    a, b = ShapesOnPhotosDataModule(**TINY), ShapesOnPhotosDataModule(**{**TINY, "train_size": 2})
    a.setup(), b.setup()
    assert np.array_equal(a.datasets["test"].images, b.datasets["test"].images)
    assert all(
        np.array_equal(x, y) for x, y in zip(a.datasets["val"].boxes, b.datasets["val"].boxes)
    )


def test_collated_batch():
    dm = ShapesOnPhotosDataModule(**TINY)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64)
    assert len(batch["boxes"]) == len(batch["labels"]) == 4
    for boxes, labels in zip(batch["boxes"], batch["labels"]):
        assert boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4)
        assert labels.dtype == torch.int64 and ((labels >= 0) & (labels < 4)).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 64
    assert dm.task_kwargs["image_size"] == 64 and dm.task_kwargs["num_classes"] == 4


def test_flip_and_scale_move_the_boxes_with_the_image():
    dm = ShapesOnPhotosDataModule(**TINY, hflip=1.0, scale=(0.5, 0.5), mean=(0.0,), std=(1.0,))
    image = np.zeros((64, 64, 3), np.uint8)
    image[10:30, 4:20] = 255  # a white block at x 4..20, y 10..30
    transform = dm.transform(train=True)
    transform.transforms = [t for t in transform.transforms if type(t).__name__ != "ColorJitter"]
    out = transform(
        image=image, bboxes=np.array([[4, 10, 20, 30]], np.float32), labels=np.array([2])
    )
    ys, xs = torch.nonzero(out["image"][0] > 0.5, as_tuple=True)
    visible = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    assert np.allclose(out["bboxes"][0], visible, atol=1.0)
    assert out["bboxes"][0][0] > 32  # flipped to the right half
    assert out["labels"].tolist() == [2]


def test_sanitize_clips_and_drops():
    boxes = np.array([[-5, 2, 10, 10], [3, 3, 3, 9], [60, 60, 80, 70], [1, 1, 5, 5]])
    kept, keep, clipped, dropped = sanitize_boxes(boxes, 64, 64)
    assert keep.tolist() == [True, False, True, True]
    assert kept.tolist() == [[0, 2, 10, 10], [60, 60, 64, 64], [1, 1, 5, 5]]
    assert (clipped, dropped) == (2, 1)


def _coco(tmp_path, annotations, categories=({"id": 3, "name": "cat"}, {"id": 7, "name": "dog"})):
    (tmp_path / "images").mkdir(exist_ok=True)
    images = []
    for i in range(3):
        Image.new("RGB", (40, 30)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 40, "height": 30})
    payload = {"images": images, "annotations": annotations, "categories": list(categories)}
    (tmp_path / "train.json").write_text(json.dumps(payload))
    return tmp_path


def test_coco_maps_categories_and_sanitises_boxes(tmp_path, caplog):
    annotations = [
        {"id": 1, "image_id": 0, "category_id": 7, "bbox": [5, 5, 10, 10]},
        {"id": 2, "image_id": 0, "category_id": 3, "bbox": [35, 20, 20, 20]},  # crosses the border
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [50, 5, 4, 4]},  # outside: no area
        {"id": 4, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1},
    ]
    root = _coco(tmp_path, annotations)
    with caplog.at_level(logging.WARNING):
        dm = COCODataModule(root=root, train_json="train.json", val_json="train.json",
                            image_root="images", image_size=64, batch_size=3)  # fmt: skip
    assert "clipped 1 box(es)" in caplog.text and "dropped 1 box(es)" in caplog.text
    assert "skipped 1 crowd" in caplog.text
    assert dm.class_names == ["cat", "dog"]
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch["labels"][0].tolist() == [1, 0] and len(batch["boxes"][1]) == 0
    scale = 64 / 40  # longest side 40 -> 64
    assert torch.allclose(batch["boxes"][0][1], torch.tensor([35, 20, 40, 30]) * scale)


def test_coco_unknown_category_is_an_error(tmp_path):
    root = _coco(tmp_path, [{"id": 1, "image_id": 0, "category_id": 5, "bbox": [1, 1, 4, 4]}])
    with pytest.raises(AnnotationError, match=r"train\.json: annotations use category id\(s\) \[5\] "
                                              r"that are not in its categories \(ids \[3, 7\]\)"):  # fmt: skip
        COCODataModule(root=root, train_json="train.json", val_json="train.json")


def test_coco_image_size_mismatch_names_the_file(tmp_path):
    root = _coco(tmp_path, [])
    Image.new("RGB", (10, 10)).save(root / "images" / "1.png")
    dm = COCODataModule(root=root, train_json="train.json", val_json="train.json",
                        image_root="images", verify=False)  # fmt: skip
    dm.setup()
    with pytest.raises(AnnotationError, match=r"images/1\.png: the image is 10x10 .* says 40x30"):
        dm.datasets["train"][1]


def _voc_xml(path, objects, size=(50, 40)):
    items = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, difficult, (x0, y0, x1, y1) in objects
    )
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename><size><width>{size[0]}"
                    f"</width><height>{size[1]}</height></size>{items}</annotation>")  # fmt: skip


def test_voc_xml_is_zero_based_and_skips_difficult(tmp_path):
    _voc_xml(tmp_path / "a.xml", [("dog", 0, (1, 1, 10, 20)), ("cat", 1, (5, 5, 9, 9))])
    (path, size, boxes, labels), clipped, dropped = read_voc_xml(
        tmp_path / "a.xml", tmp_path, ["cat", "dog"]
    )
    assert path.name == "a.jpg" and size == (50, 40)
    assert boxes.tolist() == [[0, 0, 10, 20]] and labels.tolist() == [1]


def test_voc_unknown_class_names_the_file(tmp_path):
    _voc_xml(tmp_path / "a.xml", [("unicorn", 0, (1, 1, 10, 20))])
    with pytest.raises(
        AnnotationError, match=r"a\.xml: object class 'unicorn' is not in the class list"
    ):
        read_voc_xml(tmp_path / "a.xml", tmp_path, ["cat", "dog"])


def test_voc_layout(tmp_path):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / sub).mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (50, 40)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        _voc_xml(tmp_path / "Annotations" / f"{name}.xml", [("cat", 0, (1, 1, 60, 20))])
    (tmp_path / "ImageSets/Main/train.txt").write_text("a\n")
    (tmp_path / "ImageSets/Main/val.txt").write_text("b\n")
    dm = VOCDetectionDataModule(root=tmp_path, classes=["cat"], image_size=50, batch_size=1)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch["boxes"][0].tolist() == [[0, 0, 50, 20]]  # clipped to the 50 px width
