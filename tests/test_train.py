"""End to end through train.run: fit/test, results.json, resume, evaluation, loggers (sweeps: test_sweeps.py)."""

import json

import pytest
import torch
import wandb

import train
from tests.wandb_records import read_offline_run

QUICK = ["trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2", "data.batch_size=16"]  # fmt: skip


def test_fit_then_test_writes_results(make_cfg, tmp_path):
    results = train.run(make_cfg(*QUICK))
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["main_metric"] == "test/acc"
    assert 0.0 <= written["metrics"]["test/acc"] <= 1.0
    assert written["choices"] == {"backbone": "inceptionnext", "task": "classification",
                                  "data": "digits", "model": "inception_next_atto"}  # fmt: skip
    assert written["params"] == results["params"] > 1e6
    assert written["gmacs"] > 0
    assert written["train_images_per_s"] > 0 and written["infer_images_per_s"] > 0
    assert written["seed"] == 0 and written["epochs"] == 2
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "figures" / "test_confusion_matrix.png").is_file()
    assert (tmp_path / "figures" / "test_predictions.png").is_file()


def test_in_chans_and_num_classes_come_from_the_data(make_cfg):
    cfg = make_cfg(*QUICK, "trainer.max_epochs=1")
    results = train.run(cfg)
    assert results["input_size"] == [1, 32, 32]  # digits are grey-scale


def test_resume_continues_epochs_and_optimizer(make_cfg, tmp_path):
    train.run(make_cfg(*QUICK))
    last = tmp_path / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    resumed = train.run(make_cfg(*QUICK, "trainer.max_epochs=3", f"ckpt_path={last}"))
    second = torch.load(last, weights_only=True)
    assert resumed["epochs"] == 3
    assert second["global_step"] == first["global_step"] + 4  # one more epoch of 4 batches
    step_before = first["optimizer_states"][0]["state"][0]["step"]
    step_after = second["optimizer_states"][0]["state"][0]["step"]
    assert step_after == step_before + 4  # AdamW's moments carried over, not restarted
    assert second["lr_schedulers"][0]["last_epoch"] == first["lr_schedulers"][0]["last_epoch"] + 4


def test_mode_test_only_evaluates(make_cfg, tmp_path):
    train.run(make_cfg(*QUICK, "trainer.max_epochs=1"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    (tmp_path / "results.json").unlink()
    results = train.run(make_cfg(*QUICK, "mode=test", f"ckpt_path={ckpt}"))
    assert results["mode"] == "test"
    assert results["train_images_per_s"] is None  # no training happened
    assert json.loads((tmp_path / "results.json").read_text())["metrics"]["test/acc"] >= 0


@pytest.mark.parametrize("preset", ["fdr", "overfit", "limit"])
def test_debug_presets_compose_and_run(make_cfg, preset):
    extra = ["trainer.max_epochs=1"] if preset != "fdr" else []
    results = train.run(make_cfg(f"debug={preset}", "data.batch_size=16", *extra))
    assert "test/acc" in results["metrics"]


def test_csv_and_tensorboard_loggers_receive_metrics(make_cfg, tmp_path):
    train.run(make_cfg(*QUICK, "trainer.max_epochs=1", "trainer.log_every_n_steps=1", logger="csv"))
    metrics = next((tmp_path / "csv").rglob("metrics.csv")).read_text()
    assert "train/loss" in metrics and "val/acc" in metrics and "lr-AdamW" in metrics
    train.run(make_cfg(*QUICK, "trainer.max_epochs=1", logger="tensorboard"))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents*"))


def test_wandb_offline_without_credentials(make_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    train.run(make_cfg(*QUICK, "trainer.max_epochs=1", logger="wandb"))
    assert "wandb sync" in capsys.readouterr().out
    wandb.teardown()  # the run is finished; this waits for W&B's service to flush its file
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert run["name"] == "inception_next_atto-classification-digits"
    assert run["job_type"] == "classification"
    assert {"backbone:inceptionnext", "task:classification", "data:digits"} <= set(run["tags"])
    # the panels' axes: test metrics, size, cost and speed
    assert {"test/acc", "params", "gmacs", "train_images_per_s"} <= run["summary_keys"]
    assert {"task", "backbone", "data", "trainer"} <= run["config_keys"]  # the resolved config
    media = {p.name.split("_")[0] for p in (run_dir / "files" / "media").rglob("*.png")}
    assert {"confusion", "predictions"} <= media  # every figure the task writes


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection",
                                  "super_resolution", "denoising"])  # fmt: skip
def test_a_backbone_config_may_carry_its_own_learning_rate(make_cfg, task):
    default = make_cfg(f"task={task}").task.optimizer.lr
    assert make_cfg(f"task={task}", "+backbone.lr=0.00042").task.optimizer.lr == 0.00042
    # the command line still wins over both
    assert (
        make_cfg(f"task={task}", "+backbone.lr=0.00042", "task.optimizer.lr=0.1").task.optimizer.lr
        == 0.1
    )
    assert default != 0.00042


def test_a_backbone_config_may_carry_its_own_classification_budget(make_cfg):
    assert make_cfg().trainer.max_epochs == 15
    assert make_cfg("backbone=crossvit").trainer.max_epochs == 40
    assert make_cfg("backbone=crossvit", "trainer.max_epochs=3").trainer.max_epochs == 3
