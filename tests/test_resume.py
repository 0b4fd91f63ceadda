"""Exact resume and determinism, for every task's default config on tiny data (CPU).

A run stopped by a real SIGTERM (sent to this process once its first last.ckpt exists) and
resumed from the checkpoint its resume command names ends with the same weights and the same
test metrics as the run that was never stopped; two runs with one seed give the same metrics.
The timed-budget tasks are pinned to steps with `trainer.max_time=null`: their schedule reads the
clock, which no two runs share (tests/tasks/test_schedules.py tests the clock's resume).
"""

import json
import os
import re
import signal
import threading
from pathlib import Path

import pytest
import torch

import train
from tasks.signals import RunInterrupted
from tests.conftest import CONF, compose_train
from tests.test_grid import TINY

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
TIMED = {t for t in TASKS if "max_time" in (CONF / "task" / f"{t}.yaml").read_text()}

# three scenes of three batches: a resumed epoch has more than one batch to replay
SCENES = ["data.image_size=64", "data.batch_size=2", "data.train_size=6", "data.val_size=2",
          "data.test_size=2"]  # fmt: skip
DATA = TINY | {"segmentation": SCENES, "detection": SCENES}
SHORT = ["debug=limit", "trainer.max_epochs=3", "trainer.limit_train_batches=3",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]  # fmt: skip


def overrides(task: str) -> list[str]:
    steps_only = ["trainer.max_time=null"] if task in TIMED else []
    return [f"task={task}", *SHORT, *DATA[task], *steps_only]


@pytest.fixture(autouse=True)
def video_cache(tmp_path_factory, monkeypatch):
    # the synthetic videos are written once for the whole module
    monkeypatch.setenv("CONVZOO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "video-cache"))


def run(task: str, folder: Path, *extra: str) -> dict:
    return train.run(compose_train(["logger=none", *overrides(task), *extra], folder))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def signal_when(path: Path, signum: int) -> threading.Event:
    """Send `signum` to this process once `path` exists; the returned event stops the watch."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            if path.is_file():
                os.kill(os.getpid(), signum)
                return

    threading.Thread(target=watch, daemon=True).start()
    return stop


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_a_signalled_and_resumed_run_equals_an_uninterrupted_one(task, tmp_path):
    whole = run(task, tmp_path / "whole")

    first = tmp_path / "first"
    watch = signal_when(first / "checkpoints" / "last.ckpt", signal.SIGTERM)
    with pytest.raises(RunInterrupted) as stopped:
        run(task, first)
    watch.set()
    record = json.loads((first / "results.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == "SIGTERM"
    assert record["epochs"] < 3
    (checkpoint,) = re.findall(r"ckpt_path=(\S+)", stopped.value.resume_command)
    assert checkpoint == record["resume_checkpoint"] == str(first / "checkpoints" / "last.ckpt")
    (run_dir,) = re.findall(r"hydra.run.dir=(\S+)", stopped.value.resume_command)
    assert run_dir == str(first)  # the resumed run goes on in its own folder

    resumed = run(task, first, f"ckpt_path={checkpoint}")
    assert resumed["epochs"] == whole["epochs"] == 3
    expected, actual = weights(tmp_path / "whole"), weights(first)
    assert expected.keys() == actual.keys()
    differences = {k: (expected[k].double() - actual[k].double()).abs().max().item()
                   for k in expected if expected[k].is_floating_point()}  # fmt: skip
    assert max(differences.values()) == 0.0, sorted(differences.items(), key=lambda kv: -kv[1])[:3]
    assert resumed["metrics"] == whole["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_the_same_seed_gives_the_same_metrics(task, tmp_path):
    once = run(task, tmp_path / "once")
    again = run(task, tmp_path / "again")
    assert once["metrics"] and once["metrics"] == again["metrics"]
    assert run(task, tmp_path / "other_seed", "seed=1")["metrics"] != once["metrics"]
