"""Re-ID data: Market-1501 names, errors that name the file, synthetic pedestrians, PK batches."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.images import CorruptImageError
from data.reid import (
    EpochwisePKSampler,
    Market1501DataModule,
    ReIDFileNameError,
    SyntheticPedestriansDataModule,
    parse_name,
)

TINY = dict(train_ids=10, test_ids=4, cameras=3, distractors=3, image_size=32, val_ids=2,
            ids_per_batch=3, images_per_id=2, batch_size=8)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected"),
    [("0002_c1s1_000451_03.jpg", (2, 1)), ("-1_c3s2_001234_01.jpg", (-1, 3)),
     ("0000_c6s4_002202_02.jpg", (0, 6)), ("0001_c2_f0046182.jpg", (1, 2))],
)  # fmt: skip
def test_parses_market1501_and_duke_names(name, expected):
    assert parse_name(Path(name)) == expected


def _write_market(root: Path, names: dict[str, list[str]]) -> None:
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for i, name in enumerate(files):
            Image.fromarray(np.full((16, 8, 3), 20 * i, np.uint8)).save(root / folder / name)


def test_bad_name_and_corrupt_image_are_errors_that_name_the_file(tmp_path):
    names = {
        "bounding_box_train": ["0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg",
                               "0002_c1s1_000003_00.jpg", "0002_c2s1_000004_00.jpg"],
        "query": ["0003_c1s1_000005_00.jpg"],
        "bounding_box_test": ["0003_c2s1_000006_00.jpg", "-1_c2s1_000007_00.jpg"],
    }  # fmt: skip
    _write_market(tmp_path, names)
    Market1501DataModule(root=str(tmp_path), val_ids=0).setup()
    (tmp_path / "query" / "person7.jpg").write_bytes(b"")
    with pytest.raises(ReIDFileNameError, match="person7.jpg"):
        Market1501DataModule(root=str(tmp_path)).setup()
    (tmp_path / "query" / "person7.jpg").unlink()
    (tmp_path / "query" / "0004_c1s1_000008_00.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CorruptImageError, match="0004_c1s1_000008_00.jpg"):
        Market1501DataModule(root=str(tmp_path), val_ids=0).setup()
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        Market1501DataModule(root=str(tmp_path / "missing")).setup()


def test_synthetic_pedestrians_splits_and_pk_batches(tmp_path):
    dm = SyntheticPedestriansDataModule(root=str(tmp_path), **TINY)
    dm.setup()
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    train_pids = {r.pid for r in train.records}
    val_pids = {r.pid for r in val.records}
    test_pids = {r.pid for r in test.records} - {0}
    assert not train_pids & val_pids and not train_pids & test_pids
    assert dm.num_classes == len(train_pids) == 8
    assert {r.pid for r in test.records} >= {0}  # distractors in the gallery
    assert any(test.is_query) and not all(test.is_query)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (6, 3, 32, 16)
    counts = torch.bincount(batch["label"])
    assert sorted(counts[counts > 0].tolist()) == [2, 2, 2]  # P = 3 identities x K = 2
    # the written set is reused, and is in the Market-1501 layout
    folder = next(p for p in tmp_path.iterdir() if p.name.startswith("a_"))
    assert {p.name for p in folder.iterdir()} >= {
        "bounding_box_train",
        "query",
        "bounding_box_test",
    }


def test_cross_domain_tests_on_the_other_cameras(tmp_path):
    dm = SyntheticPedestriansDataModule(root=str(tmp_path), test_domain="b", **TINY)
    dm.setup()
    assert "/b_" in str(dm.datasets["test"].records[0].path)
    assert "/a_" in str(dm.datasets["train"].records[0].path)
    with pytest.raises(ValueError, match="data.test_domain must be 'a' or 'b'"):
        SyntheticPedestriansDataModule(root=str(tmp_path), test_domain="c")


def test_synthetic_pedestrians_never_delete_a_users_folder(tmp_path):
    from data.synth.pedestrians import write_market1501

    own = tmp_path / "photos" / "holiday.jpg"
    own.parent.mkdir()
    own.write_bytes(b"a user's file")
    with pytest.raises(FileExistsError, match="photos holds files but no synthetic.json"):
        write_market1501(own.parent, train_ids=2, test_ids=2)
    assert own.read_bytes() == b"a user's file"


def test_pk_sampler_epochs_depend_on_the_generator_state_alone():
    # a resumed run builds a fresh sampler and restores numpy's state: it must draw what the
    # sampler that already ran an epoch draws from that state
    labels = np.repeat(np.arange(6), 3)
    running = EpochwisePKSampler(labels, m=2, batch_size=4, length_before_new_iter=12)
    np.random.seed(0)
    list(running)  # epoch 1 of the uninterrupted run
    state = np.random.get_state()
    second_epoch = list(running)
    np.random.set_state(state)
    fresh = EpochwisePKSampler(labels, m=2, batch_size=4, length_before_new_iter=12)
    assert list(fresh) == second_epoch
