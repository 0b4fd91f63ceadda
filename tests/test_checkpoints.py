"""Checkpoints hold plain data, load without running code, and bad ones fail before training."""

import functools
import os
import pickle
import subprocess
import sys

import pytest
import torch

import train
from tasks.checkpoints import (
    CONFIG_KEY,
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
)
from tests.conftest import ROOT, compose_train
from tests.test_grid import TASKS, TINY

ONE_BATCH = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1"]  # fmt: skip
CLASSIFICATION = "tasks.classification.ClassificationTask"


class RunsCode:
    """Unpickling this runs `exec`: it writes `marker`, as an attack would do anything else."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def flip_middle(data: bytes) -> bytes:
    """500 random bytes in the middle: in some weight, a bad disk or copy."""
    middle = len(data) // 2
    return data[:middle] + os.urandom(500) + data[middle + 500 :]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of `python train.py` (classification, InceptionNeXt-atto)."""
    out = tmp_path_factory.mktemp("run")
    train.run(compose_train(["logger=none", "data.batch_size=16", *ONE_BATCH], out))
    return out / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_every_task_writes_checkpoints_of_plain_data(make_cfg, tmp_path, task):
    cfg = make_cfg(f"task={task}", *TINY[task], *ONE_BATCH)
    results = train.run(cfg)  # tests its best checkpoint, loaded by Lightning weights-only
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        stored = torch.load(path, weights_only=True)[CONFIG_KEY]
        assert stored["task"]["_target_"] == cfg.task._target_
        assert stored["backbone"]["name"] == cfg.backbone.name
    assert results["best_checkpoint"].endswith(".ckpt")


def test_the_optimizer_is_built_from_its_config(make_cfg, tmp_path):
    train.run(make_cfg("data.batch_size=16", *ONE_BATCH, "task.optimizer.lr=0.0042"))
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["optimizer"]["lr"] == 0.0042  # a plain dict
    groups = saved["optimizer_states"][0]["param_groups"]
    assert {g["initial_lr"] for g in groups} == {0.0042}
    # timm's convention: no weight decay on norms and biases
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.05]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: b"", r"is empty \(0 bytes\)"),
        (lambda data: data[: len(data) // 2], "damaged zip archive.*truncated"),
        (lambda data: flip_middle(data), "is corrupt: its member archive/.* fails its CRC-32"),
        (lambda data: os.urandom(4096), "not a checkpoint: neither a zip archive"),
        (lambda data: b"epoch,loss\n0,1.0\n", r"not a checkpoint.*starts with b'epoc'"),
    ],
    ids=["empty", "truncated", "flipped-bytes", "random-bytes", "text"],
)
def test_an_unreadable_file_is_named(checkpoint, tmp_path, damage, message):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(damage(checkpoint.read_bytes()))
    with pytest.raises(CheckpointError, match=rf"ckpt_path='{bad}' .*{message}"):
        load_checkpoint(bad, task=CLASSIFICATION)


def test_a_torch_file_that_is_not_a_lightning_checkpoint(tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match=r"not a Lightning checkpoint: expected a dict with "
                                              r"'state_dict', found a dict of \['conv.weight'\]"):  # fmt: skip
        load_checkpoint(weights)


def test_a_missing_file_or_one_that_records_no_run(tmp_path):
    with pytest.raises(CheckpointError, match=r"ckpt_path='.*nowhere.ckpt': no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere.ckpt")
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(1)}}, bare)
    assert load_checkpoint(bare)["state_dict"]["weight"].shape == (1,)  # nothing expected
    with pytest.raises(CheckpointError, match=r"not a convzoo checkpoint: it records neither a "
                                              rf"task nor a backbone.*expected task {CLASSIFICATION}"):  # fmt: skip
        load_checkpoint(bare, task=CLASSIFICATION)


@pytest.mark.parametrize(
    "override, found",
    [
        ("task=segmentation", "task tasks.classification.ClassificationTask, this run is "
                              "tasks.segmentation.SegmentationTask"),
        ("backbone=convnext", "backbone inception_next_atto, this run is convnext_atto"),
    ],
)  # fmt: skip
def test_a_checkpoint_of_another_run_fails_before_anything_is_built(
    make_cfg, checkpoint, monkeypatch, override, found
):
    def built(*args, **kwargs):
        raise AssertionError("the run built something before refusing the checkpoint")

    monkeypatch.setattr(train, "build", built)
    with pytest.raises(CheckpointError, match=rf"ckpt_path='{checkpoint}' is a checkpoint of "
                                              rf"another run: it holds {found}"):  # fmt: skip
        train.run(make_cfg(override, "mode=test", f"ckpt_path={checkpoint}"))


@pytest.mark.parametrize("wrap", ["bare-pickle", "torch-save"])
def test_a_pickle_that_runs_code_is_refused_unread(tmp_path, wrap):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    if wrap == "bare-pickle":
        evil.write_bytes(pickle.dumps(RunsCode(str(marker))))
    else:
        torch.save({"state_dict": {}, "hyper_parameters": RunsCode(str(marker))}, evil)
    with pytest.raises(UnsafeCheckpointError, match=r"refused.*\(builtins.exec\).*run their code"):
        load_checkpoint(evil)
    assert not marker.exists()
    # what the refusal prevented: unpickled in full, the file runs its code
    if wrap == "bare-pickle":
        pickle.loads(evil.read_bytes())
    else:
        torch.load(evil, weights_only=False)
    assert marker.exists()


def test_train_py_refuses_a_checkpoint_that_runs_code(checkpoint, tmp_path):
    """The issue's done-when: `python train.py mode=test ckpt_path=<a pickle that runs code>`."""
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    # a real checkpoint of the right task and backbone, with one object that runs code
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["label_smoothing"] = RunsCode(str(marker))
    torch.save(saved, evil)
    env = {**os.environ, "CONVZOO_LOG_DIR": str(tmp_path / "logs")}
    done = subprocess.run([sys.executable, "train.py", "mode=test", f"ckpt_path={evil}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert f"ckpt_path='{evil}' was refused: it holds Python objects" in output
    assert "trust_checkpoint=true" in output
    assert not marker.exists()
    assert not list((tmp_path / "logs").rglob("results.json"))  # nothing was evaluated
    torch.load(evil, weights_only=False)
    assert marker.exists()  # the file does run code when unpickled in full


def test_a_trusted_checkpoint_with_objects_is_evaluated(make_cfg, checkpoint, tmp_path):
    # what checkpoints held before they were plain data: the optimiser as a partial
    old = tmp_path / "old.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["optimizer"] = functools.partial(torch.optim.AdamW, lr=0.002)
    torch.save(saved, old)
    evaluate = [
        "mode=test",
        f"ckpt_path={old}",
        "data.batch_size=16",
        "trainer.limit_test_batches=1",
    ]
    with pytest.raises(UnsafeCheckpointError, match=r"\(functools.partial, torch.optim.adamw"):
        train.run(make_cfg(*evaluate))
    results = train.run(make_cfg(*evaluate, "trust_checkpoint=true"))
    assert results["mode"] == "test" and 0 <= results["metrics"]["test/acc"] <= 1
