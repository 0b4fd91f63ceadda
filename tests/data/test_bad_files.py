"""Every reader of a user's files, fed bad files: each gets a `DataError` that names the file.

Bad inputs are made in tmp_path: truncated, empty, wrongly typed (text where an image or a video
should be, 16-bit and float images), wrongly sized and NaN-holding. A file that passes the cheap
checks of `setup` and fails when read (a truncated JPEG: PIL's `verify` does not decode JPEG data)
must still be named when it fails inside a DataLoader worker. docs/reliability.md lists them.
"""

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.base import DataError
from data.classification import ImageFolderDataModule, read_idx
from data.detection import COCODataModule, VOCDetectionDataModule
from data.reid import Market1501DataModule
from data.restoration import FolderSuperResolutionDataModule, NoisyPairsDataModule
from data.segmentation import MaskFolderDataModule
from data.surgical_video import (
    VideoFolderDataModule,
    decode_video,
    read_cholec80_phases,
    read_cholec80_tools,
)
from data.synth.surgical_video import PHASES, TOOLS, write_mp4
from data.volatility import USDCHFDataModule, read_bars, read_binance_agg_trades, read_lobster


def named(path: Path, message: str = "") -> str:
    """A regex matching an error message that names `path` and says `message` (a regex)."""
    return f"(?s)(?=.*{re.escape(str(path))})(?=.*{message})"


def rgb(size: tuple[int, int] = (16, 16), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return Image.fromarray(pixels)


def truncated(path: Path) -> Path:
    rgb().save(path.with_suffix(".png"))
    data = path.with_suffix(".png").read_bytes()
    path.with_suffix(".png").write_bytes(data[: len(data) // 2])
    return path.with_suffix(".png")


def empty(path: Path) -> Path:
    path.with_suffix(".png").write_bytes(b"")
    return path.with_suffix(".png")


def text(path: Path) -> Path:
    path.with_suffix(".jpg").write_text("this is not an image\n")
    return path.with_suffix(".jpg")


def sixteen_bit(path: Path) -> Path:
    Image.fromarray(np.full((16, 16), 40_000, np.uint16)).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def float_nan(path: Path) -> Path:
    Image.fromarray(np.full((16, 16), np.nan, np.float32), "F").save(path.with_suffix(".tif"))
    return path.with_suffix(".tif")


def truncated_jpeg(path: Path) -> Path:
    """Passes every header check; fails only when its pixels are decoded."""
    rgb(seed=1).save(path.with_suffix(".jpg"), quality=95)
    data = path.with_suffix(".jpg").read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) * 4 // 5])  # the header stays whole
    return path.with_suffix(".jpg")


BAD_IMAGES: dict[str, Callable[[Path], Path]] = {
    "truncated": truncated,
    "empty": empty,
    "text": text,
    "16-bit": sixteen_bit,
    "float-nan": float_nan,
}


def iterate_all(dm, workers: int = 2) -> None:
    """Read every item of every split through DataLoader workers, as training does."""
    dm.num_workers, dm.batch_size = workers, 1  # batches of one: no item left out
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for _ in loader:
            pass


# --------------------------------------------------------------------------- imagefolder


def image_folder(root: Path, per_class: int = 5) -> Path:
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            rgb(seed=i).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_imagefolder_bad_image_fails_setup_by_name(tmp_path, kind):
    root = image_folder(tmp_path / "data")
    bad = BAD_IMAGES[kind](root / "cat" / "bad")
    dm = ImageFolderDataModule(str(root), image_size=16, batch_size=4)
    with pytest.raises(DataError, match=named(bad)):
        dm.setup()


def test_imagefolder_truncated_jpeg_is_named_from_a_loader_worker(tmp_path):
    root = image_folder(tmp_path / "data")
    bad = truncated_jpeg(root / "dog" / "cut")
    dm = ImageFolderDataModule(str(root), image_size=16, batch_size=4)
    dm.setup()  # the header is whole: only decoding finds the cut
    with pytest.raises(DataError, match=named(bad)):
        iterate_all(dm)


def test_fashion_mnist_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\0\0\x08\x03" + (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0")
    with pytest.raises(DataError, match=named(path, "truncated")):
        read_idx(path)
    path.write_bytes(b"\0\0")
    with pytest.raises(DataError, match=named(path)):
        read_idx(path)


# --------------------------------------------------------------------------- masks_folder


def mask_folder(root: Path, count: int = 7) -> Path:
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for i in range(count):
        rgb(seed=i).save(root / "images" / f"{i}.png")
        Image.fromarray((np.arange(256).reshape(16, 16) % 2).astype(np.uint8)).save(
            root / "masks" / f"{i}.png"
        )
    return root


def masks(root: Path, **kwargs) -> MaskFolderDataModule:
    return MaskFolderDataModule(str(root), classes=["bg", "fg"], image_size=16, **kwargs)


@pytest.mark.parametrize("kind", ["truncated", "empty", "float-nan"])
def test_bad_mask_fails_setup_by_name(tmp_path, kind):
    root = mask_folder(tmp_path / "data")
    (root / "masks" / "3.png").unlink()
    bad = BAD_IMAGES[kind](root / "masks" / "3")
    with pytest.raises(DataError, match=named(bad)):
        masks(root).setup()


def test_mask_with_16_bit_indices_outside_the_classes_is_named(tmp_path):
    root = mask_folder(tmp_path / "data")
    bad = root / "masks" / "2.png"
    Image.fromarray(np.full((16, 16), 300, np.uint16)).save(bad)
    with pytest.raises(DataError, match=named(bad, r": unknown class index \[300\]")):
        masks(root).setup()


def test_grey_and_alpha_mask_reads_its_grey_band(tmp_path):
    root = mask_folder(tmp_path / "data")
    index = (np.arange(256).reshape(16, 16) % 2).astype(np.uint8)
    Image.fromarray(np.stack([index, np.full_like(index, 255)], -1), "LA").save(
        root / "masks" / "0.png"
    )
    dm = masks(root, split_fractions=(0.15, 0.15))
    dm.setup()
    dataset = next(d for d in dm.datasets.values() if any(m.stem == "0" for _, m in d.pairs))
    position = next(i for i, (_, m) in enumerate(dataset.pairs) if m.stem == "0")
    np.testing.assert_array_equal(dataset.read(position)[1], index)


@pytest.mark.parametrize("kind", ["truncated", "text", "16-bit"])
def test_bad_image_of_a_mask_pair_fails_setup_by_name(tmp_path, kind):
    root = mask_folder(tmp_path / "data")
    (root / "images" / "4.png").unlink()
    bad = BAD_IMAGES[kind](root / "images" / "4")
    with pytest.raises(DataError, match=named(bad)):
        masks(root).setup()


def test_mask_pair_read_in_a_worker_names_the_file(tmp_path):
    root = mask_folder(tmp_path / "data")
    (root / "images" / "5.png").unlink()
    bad = truncated_jpeg(root / "images" / "5")
    dm = masks(root, verify=False, batch_size=2)
    dm.setup()
    with pytest.raises(DataError, match=named(bad)):
        iterate_all(dm)


# --------------------------------------------------------------------------- COCO and VOC


def coco(root: Path, annotations: list | None = None, **overrides) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(2):
        rgb((20, 12), seed=i).save(root / "images" / f"{i}.png")
    content = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 20, "height": 12} for i in range(2)],
        "annotations": annotations
        if annotations is not None
        else [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [2, 2, 6, 6]}],
        "categories": [{"id": 1, "name": "thing"}],
        **overrides,
    }
    (root / "train.json").write_text(json.dumps(content))
    return root / "train.json"


def coco_module(root: Path, **kwargs) -> COCODataModule:
    return COCODataModule(str(root), train_json="train.json", val_json="train.json",
                          image_root="images", image_size=32, batch_size=2, **kwargs)  # fmt: skip


def box(bbox: object) -> list:
    return [{"id": 9, "image_id": 0, "category_id": 1, "bbox": bbox}]


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text(p.read_text()[:40]), "cannot read COCO annotations"),
        (lambda p: p.write_text(""), "cannot read COCO annotations"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00binary"), "cannot read COCO annotations"),
        (lambda p: p.write_text("[1, 2]"), "not a COCO instances file"),
        (lambda p: coco(p.parent, images={}), "'images' is a dict, not a list"),
        (lambda p: coco(p.parent, categories=[]), "no categories"),
        (lambda p: coco(p.parent, box([1, 2, float("nan"), 4])), r"bbox \[1, 2, nan, 4\] is not 4"),
        (lambda p: coco(p.parent, box([1, 2, 3])), r"bbox \[1, 2, 3\] is not 4 finite numbers"),
        (lambda p: coco(p.parent, box(["1", 2, 3, 4])), "is not 4 finite numbers"),
        (lambda p: coco(p.parent, [{"id": 3, "image_id": 0, "bbox": [1, 1, 2, 2]}]),
         r"annotations\[0\] has no 'category_id'"),
        (lambda p: coco(p.parent, images=[{"id": 0, "file_name": "0.png", "width": 0,
                                           "height": 12}]), "must be positive integers"),
    ],
)  # fmt: skip
def test_bad_coco_json_is_named(tmp_path, write, message):
    path = coco(tmp_path)
    write(path)
    with pytest.raises(DataError, match=named(path, message)):
        coco_module(tmp_path)


def test_coco_image_of_another_size_fails_setup_by_name(tmp_path):
    coco(tmp_path)
    rgb((16, 16)).save(tmp_path / "images" / "1.png")
    with pytest.raises(DataError, match=named(tmp_path / "images" / "1.png", "16x16.*20x12")):
        coco_module(tmp_path).setup()


@pytest.mark.parametrize("kind", ["truncated", "empty", "text"])
def test_coco_bad_image_fails_setup_by_name(tmp_path, kind):
    coco(tmp_path)
    (tmp_path / "images" / "1.png").unlink()
    bad = BAD_IMAGES[kind](tmp_path / "images" / "1")
    (tmp_path / "images" / "1.png").write_bytes(bad.read_bytes())  # the name the json gives
    with pytest.raises(DataError, match=named(tmp_path / "images" / "1.png")):
        coco_module(tmp_path).setup()


def test_coco_image_read_in_a_worker_names_the_file(tmp_path):
    coco(tmp_path)
    cut = truncated_jpeg(tmp_path / "images" / "cut")
    bad = tmp_path / "images" / "1.png"
    bad.write_bytes(cut.read_bytes())  # a JPEG named .png: PIL reads it by its content
    dm = coco_module(tmp_path, verify=False)
    dm.setup()
    with pytest.raises(DataError, match=named(bad)):
        iterate_all(dm)


def voc(root: Path, xml: str) -> Path:
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("a\n")
    (root / "Annotations" / "a.xml").write_text(xml)
    rgb((20, 12)).save(root / "JPEGImages" / "a.jpg")
    return root / "Annotations" / "a.xml"


GOOD_BOX = "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>8</xmax><ymax>8</ymax></bndbox>"
GOOD_SIZE = "<size><width>20</width><height>12</height></size>"


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (f"<annotation>{GOOD_SIZE}<object><name>cat", "cannot read VOC annotation"),
        ("", "cannot read VOC annotation"),
        (f"<annotation><object><name>cat</name>{GOOD_BOX}</object></annotation>",
         r"<size/width> is None, expected a finite number"),
        ("<annotation><size><width>wide</width><height>12</height></size></annotation>",
         r"<size/width> is 'wide'"),
        (f"<annotation>{GOOD_SIZE}<object><name>cat</name></object></annotation>",
         r"<bndbox/xmin> is None"),
        (f"<annotation>{GOOD_SIZE}<object><name>cat</name>{GOOD_BOX.replace('>8<', '>nan<', 1)}"
         "</object></annotation>", r"<bndbox/xmax> is 'nan'"),
    ],
)  # fmt: skip
def test_bad_voc_xml_is_named(tmp_path, xml, message):
    path = voc(tmp_path, xml)
    with pytest.raises(DataError, match=named(path, message)):
        VOCDetectionDataModule(str(tmp_path), classes=["cat"])


# --------------------------------------------------------------------------- hr_folder, noisy_pairs


def hr_folder(root: Path, count: int = 5, size: tuple[int, int] = (24, 24)) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        rgb(size, seed=i).save(root / f"{i}.png")
    return root


def sr(root: Path, **kwargs) -> FolderSuperResolutionDataModule:
    return FolderSuperResolutionDataModule(str(root), scale=2, patch_size=4, **kwargs)


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_hr_image_fails_setup_by_name(tmp_path, kind):
    root = hr_folder(tmp_path / "hr")
    bad = BAD_IMAGES[kind](root / "bad")
    with pytest.raises(DataError, match=named(bad)):
        sr(root).setup()


def test_lr_partner_of_the_wrong_size_fails_setup_by_name(tmp_path):
    hr = hr_folder(tmp_path / "hr")
    lr = tmp_path / "lr"
    lr.mkdir()
    for i in range(5):
        rgb((12, 12) if i else (11, 12), seed=i).save(lr / f"{i}.png")
    dm = sr(tmp_path, hr_dirs={"train": "hr"}, lr_dirs={"train": "lr"})
    with pytest.raises(
        DataError, match=named(lr / "0.png", f"is 11x12 .*{re.escape(str(hr / '0.png'))}")
    ):
        dm.setup()


def test_evaluation_image_smaller_than_the_scale_fails_setup_by_name(tmp_path):
    hr_folder(tmp_path / "train")
    speck = hr_folder(tmp_path / "val", count=1, size=(1, 5)) / "0.png"
    dm = sr(tmp_path, hr_dirs={"train": "train", "val": "val", "test": "val"})
    with pytest.raises(DataError, match=named(speck, " is 1x5: too small for scale 2")):
        dm.setup()


def noisy_pairs(root: Path, count: int = 5) -> Path:
    for folder in ("noisy", "clean"):
        hr_folder(root / folder, count)
    return root


@pytest.mark.parametrize("kind", ["truncated", "empty", "16-bit"])
def test_bad_noisy_or_clean_image_fails_setup_by_name(tmp_path, kind):
    root = noisy_pairs(tmp_path / "pairs")
    (root / "clean" / "2.png").unlink()
    bad = BAD_IMAGES[kind](root / "clean" / "2")
    with pytest.raises(DataError, match=named(bad)):
        NoisyPairsDataModule(str(root), patch_size=4).setup()


def test_noisy_image_of_another_size_fails_setup_by_name(tmp_path):
    root = noisy_pairs(tmp_path / "pairs")
    rgb((24, 20)).save(root / "noisy" / "3.png")
    with pytest.raises(DataError, match=named(root / "noisy" / "3.png", " is 24x20")):
        NoisyPairsDataModule(str(root), patch_size=4).setup()


def test_restoration_image_read_in_a_worker_names_the_file(tmp_path):
    root = hr_folder(tmp_path / "hr")
    (root / "4.png").unlink()
    bad = truncated_jpeg(root / "4")
    dm = sr(root, samples_per_epoch=8, batch_size=4)
    dm.setup()
    with pytest.raises(DataError, match=named(bad)):
        iterate_all(dm)


# --------------------------------------------------------------------------- market1501


def market(root: Path) -> Path:
    names = {
        "bounding_box_train": [f"{p:04d}_c{c}s1_00000{i}_00" for p in (1, 2, 3, 4) for c in (1, 2)
                               for i in range(2)],
        "query": ["0007_c1s1_000001_00", "0008_c1s1_000001_00"],
        "bounding_box_test": ["0007_c2s1_000002_00", "0008_c2s1_000002_00", "-1_c1s1_000003_00"],
    }  # fmt: skip
    for folder, stems in names.items():
        (root / folder).mkdir(parents=True)
        for i, stem in enumerate(stems):
            rgb((8, 16), seed=i).save(root / folder / f"{stem}.jpg")
    return root


def reid(root: Path, **kwargs) -> Market1501DataModule:
    return Market1501DataModule(str(root), image_size=16, ids_per_batch=2, images_per_id=2,
                                val_ids=1, batch_size=4, augment=False, **kwargs)  # fmt: skip


def test_query_folder_without_images_is_named(tmp_path):
    root = market(tmp_path / "market")
    for path in (root / "query").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=named(root / "query", ": no images")):
        reid(root).setup()


def test_query_folder_of_junk_only_is_named(tmp_path):
    root = market(tmp_path / "market")
    for path in (root / "query").iterdir():
        path.rename(path.with_name("-1" + path.name[4:]))
    with pytest.raises(DataError, match=named(root / "query", ": no query of a person")):
        reid(root).setup()


def test_reid_image_read_in_a_worker_names_the_file(tmp_path):
    root = market(tmp_path / "market")
    bad = root / "bounding_box_test" / "0008_c2s1_000002_00.jpg"
    bad.unlink()
    truncated_jpeg(bad)
    dm = reid(root)
    dm.setup()
    with pytest.raises(DataError, match=named(bad)):
        iterate_all(dm)


# --------------------------------------------------------------------------- volatility

BINANCE = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable CSV file"),
        (BINANCE.encode(), "no data rows"),
        (bytes(range(256)) * 8, "not a readable CSV file"),
        ((BINANCE + "1,10,1,1,1,1000,true\n2,10,1,2,2,1001,false,extra,fields\n").encode(),
         "not a readable CSV file"),
        ((BINANCE + "1,10,1,1,1,1000,true\n2,10,NaN,2,2,1001,false\n").encode(),
         "line 3: column 'quantity' is nan, not a finite number"),
    ],
)  # fmt: skip
def test_bad_binance_file_is_named(tmp_path, content, message):
    path = tmp_path / "BTCUSDT-aggTrades.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=named(path, message)):
        read_binance_agg_trades(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable CSV file"),
        (b"timestamp,close\n", "no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00" * 20, "not a readable CSV file"),
        (b"timestamp,close\n1,1.0\n2,nan\n", "line 3: column 'close' is nan"),
        (b"timestamp,close,volume\n1,1.0,5\n2,1.1,\n", "line 3: column 'volume' is nan"),
    ],
)
def test_bad_bars_file_is_named(tmp_path, content, message):
    path = tmp_path / "bars.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=named(path, message)):
        read_bars(path)


@pytest.mark.parametrize(
    ("messages", "book", "bad", "message"),
    [
        ("", "1000100,5,999900,5\n", "message", "not a readable CSV file"),
        ("34200.0,4,1,10,1000000,-1\n", "1000100,5,nan,5\n", "book", "line 1: column 2 is nan"),
        ("34200.0,4,1,10,1000000,-1\n", "1000100,five,999900,5\n", "book", "column 1 is 'five'"),
        ("34200.0,4,1,10,1000000,-1\n", "", "book", "not a readable CSV file"),
        ("34200.0,4,1,,1000000,-1\n", "1000100,5,999900,5\n", "message", "column 'size' is nan"),
    ],
)
def test_bad_lobster_file_is_named(tmp_path, messages, book, bad, message):
    paths = {"message": tmp_path / "X_message_10.csv", "book": tmp_path / "X_orderbook_10.csv"}
    paths["message"].write_text(messages)
    paths["book"].write_text(book)
    with pytest.raises(DataError, match=named(paths[bad], message)):
        read_lobster(paths["message"], paths["book"])


def test_corrupt_usdchf_data_base_is_named(tmp_path):
    index = tmp_path / "pkg" / "timeSeries" / "data" / "Rdata.rdx"
    index.parent.mkdir(parents=True)
    index.write_bytes(b"not an R data base")
    with pytest.raises(DataError, match=named(index)):
        USDCHFDataModule(cache_dir=str(tmp_path / "pkg")).setup()


# --------------------------------------------------------------------------- surgical video


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    frames = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), np.uint8)
    write_mp4(path, frames, fps=4)
    return path


@pytest.mark.parametrize(
    "write",
    [
        lambda p, mp4: p.write_bytes(b""),
        lambda p, mp4: p.write_text("not a video\n" * 50),
        lambda p, mp4: p.write_bytes(mp4.read_bytes()[: len(mp4.read_bytes()) // 3]),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_video_is_named(tmp_path, small_mp4, write):
    path = tmp_path / "video01.mp4"
    write(path, small_mp4)
    with pytest.raises(DataError, match=named(path)):
        decode_video(path, None, 16)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected a 'Frame<TAB>Phase' header"),
        ("Frame\tPhase\n", "no labelled frames"),
        ("Frame\tPhase\n0\n", "line 2: expected a frame and a phase"),
        ("Frame\tPhase\n0\tCuttingCorners\n", "line 2: unknown phase 'CuttingCorners'"),
    ],
)
def test_bad_cholec80_phase_file_is_named(tmp_path, content, message):
    path = tmp_path / "video01-phase.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=named(path, message)):
        read_cholec80_phases(path, 1, PHASES)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "expected the header"),
        (["0" + "\t0" * len(TOOLS)], "expected the header"),
        ([], "every row needs a frame"),
        (["0" + "\tnan" * len(TOOLS)], "line 2: a tool value is not a finite number"),
        (["0\t1"], "non-numeric tool annotation|every row needs"),
    ],
)
def test_bad_cholec80_tool_file_is_named(tmp_path, rows, message):
    path = tmp_path / "video01-tool.txt"
    header = [] if message == "expected the header" else ["Frame\t" + "\t".join(TOOLS)]
    path.write_text("\n".join(header + rows) + "\n")
    with pytest.raises(DataError, match=named(path, f"({message})")):
        read_cholec80_tools(path, np.arange(1), TOOLS)


def video_folder(root: Path, csv_text: str) -> Path:
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        (root / split / "case.mp4").write_bytes(b"")  # never decoded by these tests
        (root / split / "case.csv").write_text("frame,phase,hook\n0,a,0\n1,b,1\n")
    (root / "val" / "case.csv").write_text(csv_text)
    return root / "val" / "case.csv"


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("", "expected the header 'frame,phase,hook', got ''"),
        ("frame,hook\n0,1\n", "expected the header 'frame,phase,hook', got 'frame,hook'"),
        ("frame,phase\n0,a\n", "got 'frame,phase'"),
    ],
)
def test_bad_video_folder_csv_fails_before_decoding(tmp_path, csv_text, message):
    path = video_folder(tmp_path, csv_text)
    with pytest.raises(DataError, match=named(path, message)):
        VideoFolderDataModule(str(tmp_path), cache_dir=None)


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("frame,phase,hook\n", "no labelled frames"),
        ("frame,phase,hook\n0,a,0\n1,b,nan\n", "line 3: a tool value is not a finite number"),
        ("frame,phase,hook\n0,a,0\n1,b,yes\n", "bad tool column"),
        ("frame,phase,hook\n0,a,0\n1,b\n", "bad tool column"),
    ],
)
def test_bad_video_folder_labels_are_named(tmp_path, csv_text, message):
    path = video_folder(tmp_path, csv_text)
    dm = VideoFolderDataModule(str(tmp_path), cache_dir=None)
    source = dm.sources("val")[0]
    with pytest.raises(DataError, match=named(path, message)):
        source.labels(2, np.arange(2))


def test_unreadable_frame_cache_is_decoded_again(tmp_path, small_mp4, caplog):
    frames, *_ = decode_video(small_mp4, None, 16, tmp_path)
    (cached,) = (tmp_path / "frames").glob("clip-*/frames.npy")
    cached.write_bytes(cached.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again, *_ = decode_video(small_mp4, None, 16, tmp_path)
    assert f"{cached.parent}: unreadable frame cache of {small_mp4}" in caplog.text
    np.testing.assert_array_equal(again, frames)
    np.testing.assert_array_equal(np.load(cached), frames)  # rewritten whole


def test_frame_cache_that_cannot_be_written_warns_and_decodes(tmp_path, small_mp4, caplog):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        frames, *_ = decode_video(small_mp4, None, 16, not_a_folder)
    assert len(frames) == 12 and "cannot cache the frames of" in caplog.text
    assert not_a_folder.read_text() == "a file where the cache folder should be"
