"""SIGTERM and SIGINT, sent with os.kill to `python train.py` in a subprocess, as a cluster or a
Ctrl-C sends them: a resumable checkpoint, results.json `interrupted`, the resume command printed
and working; a second signal ends the run at once; a signalled sweep job resumes."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

# epochs of 4 batches; 30 of them: long enough to be signalled in the middle
RUN = ["logger=none", "trainer.limit_train_batches=4",
       "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "data.batch_size=16"]  # fmt: skip


def start(*args: str, log_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "CONVZOO_LOG_DIR": str(log_dir)}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 600) -> Path:
    deadline = time.monotonic() + timeout
    while not (found := sorted(root.glob(pattern))):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {pattern} after {timeout} s"
        time.sleep(0.2)
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_with_results_and_a_resume_command(signum, tmp_path):
    proc = start(*RUN, "trainer.max_epochs=30", log_dir=tmp_path)
    last = wait_for("classification/runs/*/checkpoints/last.ckpt", tmp_path, proc)
    os.kill(proc.pid, signum)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signum, output[-3000:]
    run_dir = last.parent.parent
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == signal.Signals(signum).name
    assert 1 <= record["epochs"] < 30 and "val/acc" in record["metrics"]
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    command = output.split("Resume with:\n")[1].splitlines()[0].strip()
    assert command == record["resume_command"] and f"ckpt_path={last}" in command

    # the printed command, with one epoch to go
    args = [a for a in shlex.split(command)[2:] if not a.startswith("trainer.max_epochs=")]
    args.append(f"trainer.max_epochs={record['epochs'] + 1}")
    resumed = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "CONVZOO_LOG_DIR": str(tmp_path)},
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = json.loads((run_dir / "results.json").read_text())
    assert done["status"] == "completed" and done["epochs"] == record["epochs"] + 1
    assert "test/acc" in done["metrics"]


@pytest.mark.slow
def test_a_second_signal_ends_the_run_at_once(tmp_path):
    proc = start(*RUN, "trainer.max_epochs=30", log_dir=tmp_path)
    wait_for("classification/runs/*/checkpoints/last.ckpt", tmp_path, proc)
    os.kill(proc.pid, signal.SIGTERM)
    for line in proc.stdout:  # the first signal is acknowledged...
        if "stopping after the current batch" in line:
            break
    os.kill(proc.pid, signal.SIGTERM)  # ...and the second one kills
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGTERM, output[-3000:]
    assert "second signal: stopping now" in output


@pytest.mark.slow
def test_a_signalled_sweep_job_is_recorded_interrupted_and_resumes(tmp_path):
    sweep = ["-m", "backbone=inceptionnext", *RUN, "trainer.max_epochs=4"]
    proc = start(*sweep, log_dir=tmp_path)
    wait_for("multiruns/*/0/checkpoints/last.ckpt", tmp_path, proc)
    os.kill(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    (sweep_dir,) = (tmp_path / "multiruns").iterdir()
    record = json.loads((sweep_dir / "0" / "results.json").read_text())
    assert record["status"] == "interrupted" and record["overrides"]
    assert f"hydra.sweep.dir={sweep_dir}" in record["resume_command"]

    args = shlex.split(record["resume_command"])[2:]  # the same sweep, into the same folder
    resumed = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "CONVZOO_LOG_DIR": str(tmp_path)},
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "interrupted earlier; resuming from" in " ".join(resumed.stdout.split())
    done = json.loads((sweep_dir / "0" / "results.json").read_text())
    assert done["status"] == "completed" and done["epochs"] == 4
