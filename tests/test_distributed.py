"""DDP on CPU (gloo), run as a user runs it: `python train.py trainer=ddp ...` in a subprocess.

Lightning starts the second process by running train.py again, so these tests cannot run
in-process. Each costs a minute or so on 2 cores: marked slow.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["classification", "segmentation", "detection", "super_resolution", "denoising",
         "reid", "volatility", "surgical_video"]  # fmt: skip


def train(*overrides: str, log_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVZOO_LOG_DIR": str(log_dir)}
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "logger=none", *overrides],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def newest_run(log_dir: Path, task: str) -> Path:
    return max((log_dir / task / "runs").iterdir(), key=lambda path: path.name)


def check_ddp_run(done: subprocess.CompletedProcess, run: Path) -> None:
    assert (run / "train_ddp_process_1.log").is_file()  # a second process took part
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["main_metric"] in results["metrics"]
    # both processes share stdout: only the first one wrote and printed results
    assert done.stdout.count("results: ") == 1


# classification and re-ID train under DDP in test_ddp_test_metrics_equal_a_single_process
@pytest.mark.slow
@pytest.mark.parametrize("task", [t for t in TASKS if t not in ("classification", "reid")])
def test_every_task_trains_and_tests_under_ddp(task, tmp_path):
    done = train(f"task={task}", "trainer=ddp", "debug=fdr", log_dir=tmp_path)
    check_ddp_run(done, newest_run(tmp_path, task))


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, fit",
    [
        ("classification", ["trainer.max_epochs=1", "trainer.limit_train_batches=4"]),
        # re-ID gathers its own embeddings across processes (tasks/distributed.py)
        ("reid", ["debug=limit", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]),
    ],
)
def test_ddp_test_metrics_equal_a_single_process(task, fit, tmp_path):
    done = train(f"task={task}", "trainer=ddp", *fit, log_dir=tmp_path)
    check_ddp_run(done, newest_run(tmp_path, task))
    checkpoint = newest_run(tmp_path, task) / "checkpoints" / "last.ckpt"
    metrics = []
    for trainer in ("default", "ddp"):
        train(f"task={task}", "mode=test", f"ckpt_path={checkpoint}", f"trainer={trainer}",
              log_dir=tmp_path)  # fmt: skip
        metrics.append(json.loads((newest_run(tmp_path, task) / "results.json").read_text()))
    single, ddp = (m["metrics"] for m in metrics)
    assert single.keys() == ddp.keys()
    for key in single:  # every sample evaluated once: equal up to float summation order
        assert ddp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key


def test_ddp_inside_a_local_multirun_is_refused(tmp_path):
    env = {**os.environ, "CONVZOO_LOG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "trainer=ddp", "debug=fdr"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "trainer=ddp cannot run inside a local multirun" in done.stdout + done.stderr


def test_evaluation_sampler_gives_every_sample_to_one_process():
    from data.base import evaluation_sampler

    class TwoProcesses:
        world_size = 2

        def __init__(self, rank: int):
            self.global_rank = rank

    dataset = torch.utils.data.TensorDataset(torch.arange(7))
    shares = [list(evaluation_sampler(dataset, TwoProcesses(rank))) for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(7))  # no sample twice, none missing
    assert evaluation_sampler(dataset, None) is None
    # fewer samples than processes: padded, so that no process goes without a batch
    single = torch.utils.data.TensorDataset(torch.arange(1))
    assert [len(evaluation_sampler(single, TwoProcesses(rank))) for rank in (0, 1)] == [1, 1]
