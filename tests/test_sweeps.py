"""Sweeps as the README writes them: from a fresh checkout, failures recorded, resumable, parallel.

The multirun tests run `python train.py -m ...` in a subprocess, the way a user types it. The
first runs a copy of train.py and conf/ in a temporary folder with no environment set, so that
the default sweep dir (`logs/multiruns/<date>_<time>/` beside train.py) is what gets written; the
others point the log root at a temporary folder through CONVZOO_LOG_DIR, the variable a user
sets to move logs (README), never through a Hydra override.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.convzoo_optuna.optuna_sweeper import ConvzooOptunaSweeper
from tasks.results import check_override_keys
from tasks.sweep import job_lock, run_job, threads_per_job
from tests.conftest import ROOT

QUICK = ["trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2", "data.batch_size=16", "logger=none"]  # fmt: skip


def sweep(*overrides: str, log_dir: Path, cwd: Path = ROOT, timeout: int = 600):
    """`python train.py -m <overrides>` as a user runs it, logging under `log_dir`."""
    env = {**os.environ, "CONVZOO_LOG_DIR": str(log_dir)}
    return subprocess.run(
        [sys.executable, "train.py", "-m", *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def only_sweep_dir(log_dir: Path) -> Path:
    (sweep_dir,) = (log_dir / "multiruns").iterdir()
    return sweep_dir


def summary(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_readme_sweep_runs_from_a_fresh_checkout(tmp_path):
    checkout = tmp_path / "convzoo"
    checkout.mkdir()
    shutil.copy(ROOT / "train.py", checkout)
    shutil.copytree(ROOT / "conf", checkout / "conf")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVZOO_")}
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "backbone=inceptionnext,hornet", "debug=fdr"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary(only_sweep_dir(checkout / "logs"))
    assert {r["backbone"] for r in rows} == {"inceptionnext", "hornet"}
    assert {r["status"] for r in rows} == {"completed"}
    acc = [float(r["test/acc"]) for r in rows]
    assert acc == sorted(acc, reverse=True)  # best first
    assert (only_sweep_dir(checkout / "logs") / "summary.md").read_text().startswith("| job |")


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_a_rerun_skips_the_completed_one(tmp_path):
    first = sweep("backbone=inceptionnext,espcn", "debug=fdr", log_dir=tmp_path)
    assert first.returncode == 1  # a sweep with a failed job says so
    assert "1 job(s) of the sweep did not complete" in first.stdout
    sweep_dir = only_sweep_dir(tmp_path)
    rows = {r["backbone"]: r for r in summary(sweep_dir)}
    assert rows["inceptionnext"]["status"] == "completed"
    assert rows["espcn"]["status"] == "failed"
    assert "image restoration network" in rows["espcn"]["error"]
    record = json.loads((sweep_dir / "1" / "results.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"]

    completed = (sweep_dir / "0" / "results.json").read_text()
    again = sweep("backbone=inceptionnext,espcn", "debug=fdr", f"hydra.sweep.dir={sweep_dir}",
                  log_dir=tmp_path)  # fmt: skip
    assert again.returncode == 1
    assert "job 0: completed earlier" in " ".join(again.stdout.split())
    assert (sweep_dir / "0" / "results.json").read_text() == completed  # not run again


@pytest.mark.slow
def test_an_interrupted_job_resumes_from_its_last_checkpoint(tmp_path):
    overrides = ["backbone=inceptionnext", "trainer.max_epochs=3", *QUICK]
    env = {**os.environ, "CONVZOO_LOG_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", *overrides],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("multiruns/*/0/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, "no last.ckpt was written"
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # the hardest stop: no handler runs
    proc.wait()
    sweep_dir = only_sweep_dir(tmp_path)
    assert json.loads((sweep_dir / "0" / "results.json").read_text())["status"] == "running"

    resumed = sweep(*overrides, f"hydra.sweep.dir={sweep_dir}", log_dir=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "interrupted earlier; resuming from" in " ".join(resumed.stdout.split())
    record = json.loads((sweep_dir / "0" / "results.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 3


@pytest.mark.slow
def test_joblib_shares_the_cores_between_parallel_jobs(tmp_path):
    done = sweep("backbone=inceptionnext,convnext", "debug=fdr", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2", log_dir=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_dir = only_sweep_dir(tmp_path)
    threads = {json.loads(p.read_text())["torch_threads"] for p in sweep_dir.glob("*/results.json")}
    assert threads == {max(1, (os.cpu_count() or 1) // 2)}
    assert {r["status"] for r in summary(sweep_dir)} == {"completed"}


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_slurm_code_path(tmp_path):
    done = sweep("backbone=inceptionnext", "debug=fdr", "hydra/launcher=submitit_local",
                 log_dir=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_dir = only_sweep_dir(tmp_path)
    assert [r["status"] for r in summary(sweep_dir)] == ["completed"]
    assert list(sweep_dir.glob(".submitit/*/*_log.out"))  # where submitit keeps a job's output


def test_slurm_launcher_config_composes(make_cfg):
    launcher = make_cfg("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node  # one Lightning process per GPU
    assert launcher.max_num_timeout > 0  # requeued on preemption


def test_an_unknown_sweep_key_is_refused_with_the_closest_keys(make_cfg, capsys):
    cfg = make_cfg()
    with pytest.raises(SystemExit):
        check_override_keys(cfg, ["task.optimizer.lrr=0.1,0.2"])
    assert "Closest: task.optimizer.lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_override_keys(cfg, ["trainer.max_epoch=1,2"])
    assert "trainer.max_epochs" in capsys.readouterr().err
    # known keys, new keys, group choices and keys under a swept group all pass
    check_override_keys(cfg, ["task.optimizer.lr=0.1,0.2", "+task.foo=1", "backbone=hornet,convnext",
                              "task=segmentation,classification", "task.decoder=fpn,upernet"])  # fmt: skip


def test_a_job_that_raises_is_recorded_as_failed(make_cfg, tmp_path):
    cfg = make_cfg("backbone=hornet")

    def explode(cfg):
        raise RuntimeError("out of memory (simulated)")

    messages = []
    assert run_job(cfg, explode, log=messages.append) is None
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: out of memory (simulated)"
    assert record["choices"]["backbone"] == "hornet"
    assert any("failed" in m for m in messages)


def test_a_job_of_another_sweep_is_not_clobbered(make_cfg, tmp_path):
    other = {"job": 0, "overrides": ["backbone=convnext"], "status": "completed", "metrics": {}}
    (tmp_path / "results.json").write_text(json.dumps(other))
    cfg = make_cfg("backbone=hornet")
    messages = []
    assert run_job(cfg, lambda cfg: pytest.fail("must not run"), log=messages.append) is None
    assert json.loads((tmp_path / "results.json").read_text()) == other
    assert "other overrides" in messages[0] and "hydra.sweep.dir" in messages[0]


def test_a_job_running_in_another_sweep_is_skipped(make_cfg, tmp_path):
    cfg = make_cfg()
    messages = []
    with job_lock(tmp_path) as held:
        assert held
        assert run_job(cfg, lambda cfg: pytest.fail("must not run"), log=messages.append) is None
    assert "being run by another sweep" in messages[0]
    with job_lock(tmp_path) as held_again:  # released when its holder is done
        assert held_again


@pytest.mark.parametrize(
    "launcher, cores, expected",
    [({"_target_": "x.JoblibLauncher", "n_jobs": 2}, 8, 4),
     ({"_target_": "x.JoblibLauncher", "n_jobs": -1}, 8, 1),
     ({"_target_": "x.JoblibLauncher", "n_jobs": 4}, 2, 1),
     ({"_target_": "x.BasicLauncher"}, 8, None)],
)  # fmt: skip
def test_threads_per_job(launcher, cores, expected):
    assert threads_per_job(OmegaConf.create(launcher), cpu_count=cores) == expected


class FakeLauncher:
    """Returns one preset outcome per job: a value, NaN, or a failure (None)."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.launched = []

    def launch(self, batch, initial_job_idx):
        self.launched += [(initial_job_idx + i, overrides) for i, overrides in enumerate(batch)]
        results = []
        for _ in batch:
            value = self.outcomes.pop(0)
            status = JobStatus.FAILED if value is None else JobStatus.COMPLETED
            results.append(JobReturn(status=status, _return_value=value))
        return results


def make_sweeper(tmp_path, n_trials, outcomes, monkeypatch):
    sweeper = ConvzooOptunaSweeper(direction="maximize", n_trials=n_trials, n_jobs=1,
                                   study_name="s", storage=None, seed=0,
                                   params={"task.optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
                                           "data.batch_size": "choice(8, 16)"})  # fmt: skip
    sweeper.hydra_context = SimpleNamespace(config_loader=None)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.sweep_dir = tmp_path
    sweeper.launcher = FakeLauncher(outcomes)
    monkeypatch.setattr(sweeper, "validate_batch_is_legal", lambda batch: None)
    return sweeper


def test_optuna_marks_failed_and_nan_trials_failed_and_goes_on(tmp_path, monkeypatch):
    sweeper = make_sweeper(tmp_path, 4, [0.5, float("nan"), None, 0.7], monkeypatch)
    sweeper.sweep(["debug=fdr"])
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]  # fmt: skip
    assert [job for job, _ in sweeper.launcher.launched] == [0, 1, 2, 3]  # job N is trial N
    overrides = sweeper.launcher.launched[0][1]
    assert overrides[0] == "debug=fdr" and overrides[1].startswith("task.optimizer.lr=")
    best = OmegaConf.load(tmp_path / "best_trial.yaml")
    assert best.trial == 3 and best.value == 0.7 and "task.optimizer.lr" in best.params


def test_optuna_study_continues_after_a_kill(tmp_path, monkeypatch):
    make_sweeper(tmp_path, 2, [0.1, 0.2], monkeypatch).sweep([])
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.load_study(study_name="s", storage=storage).ask()  # a trial a killed sweep left open
    sweeper = make_sweeper(tmp_path, 2, [0.3, 0.4], monkeypatch)
    sweeper.sweep([])
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 5 and study.trials[2].state == TrialState.FAIL
    assert [job for job, _ in sweeper.launcher.launched] == [3, 4]  # new job dirs, none reused
    assert OmegaConf.load(tmp_path / "best_trial.yaml").value == 0.4


def test_optuna_direction_follows_the_task(make_cfg):
    sweeper = ConvzooOptunaSweeper("auto", 1, 1, "s", None, 0, {})
    sweeper.config = make_cfg("task=classification")
    assert sweeper.task_direction() == "maximize"


@pytest.mark.slow
def test_optuna_sweep_runs_and_reruns_into_the_same_study(tmp_path):
    first = sweep(
        "hparams_search=optuna", "hydra.sweeper.n_trials=2", "debug=fdr", log_dir=tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    sweep_dir = only_sweep_dir(tmp_path)
    again = sweep("hparams_search=optuna", "hydra.sweeper.n_trials=1", "debug=fdr",
                  f"hydra.sweep.dir={sweep_dir}", log_dir=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="convzoo", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert len(study.trials) == 3
    assert sorted(p.name for p in sweep_dir.glob("[0-9]*")) == ["0", "1", "2"]
    assert OmegaConf.load(sweep_dir / "best_trial.yaml").trials == 3


def test_wandb_sweep_example_passes_valid_hydra_overrides(make_cfg):
    # W&B's own ${...} macros, not OmegaConf interpolations: read as plain YAML
    sweep_cfg = yaml.safe_load((ROOT / "conf" / "wandb_sweep.yaml").read_text())
    assert "${args_no_hyphens}" in sweep_cfg["command"]  # `key=value`, as Hydra reads them
    for key, spec in sweep_cfg["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec["min"]
        make_cfg(f"{key}={value}")  # composes: the key exists and the value fits
    assert sweep_cfg["metric"]["name"] == "test/acc"  # the default task's main metric
