"""SIGTERM and SIGINT end a run with a resumable checkpoint, its results and the command to resume.

What Lightning 2.6 does alone:

- SIGTERM (a cluster's warning before preemption): its `_SignalConnector` sets
  `trainer.received_sigterm`, the loops raise `SIGTERMException` (a `SystemExit`) after the current
  batch, `on_exception` callbacks run (our `OnExceptionCheckpoint` writes interrupted.ckpt), and
  the exception leaves `trainer.fit`: the process exits with status 0, no results and no word
  of how to go on.
- SIGINT (Ctrl-C): Python raises `KeyboardInterrupt` wherever the run is, in the middle of an
  optimiser step included; Lightning catches it, ignores any further Ctrl-C, writes the
  checkpoint and calls `sys.exit(1)`: no results, no message, and no way to stop it at once.

`StopOnSignal` puts both on Lightning's SIGTERM path. The first signal is only noted (a
handler does no work in the middle of a step); at the end of the current batch the run raises
`SIGTERMException`, as Lightning's loops do for SIGTERM, so Lightning's own exception handling
and `OnExceptionCheckpoint` run. train.py then writes results.json (`status: interrupted`, the
metrics that exist), prints the command that resumes the run, and exits with 128 + the signal's
number, the shell's convention. A second signal ends the process at once by the signal's default
action. Lightning chains our SIGTERM handler after its own, so its notifier still runs (and, in
a multi-process launch, still stops the other processes).
"""

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from .results import RESULTS_FILE, write_results

HANDLED = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal, after its checkpoint and results were written."""

    def __init__(self, signum: int, resume_command: str):
        super().__init__(f"{signal.Signals(signum).name}: resume with {resume_command}")
        self.signum, self.resume_command = signum, resume_command

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopOnSignal(L.Callback):
    """Stops a run at the end of the current batch on the first SIGINT/SIGTERM, at once on a second.

    Use as a context manager around `trainer.fit`/`trainer.test` (it installs the handlers), and
    pass it to the trainer as a callback (it raises the stop at batch ends).
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # os.write, not print: a handler may run in the middle of another print
        if self.received is not None:
            os.write(2, b"\nsecond signal: stopping now, without a checkpoint\n")
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signal.Signals(signum)
        os.write(
            2,
            f"\n{self.received.name}: stopping after the current batch, with a checkpoint "
            "(send it again to stop at once)\n".encode(),
        )

    def _stop_if_signalled(self) -> None:
        if self.received is not None:
            raise SIGTERMException

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()


def resume_checkpoint(trainer: L.Trainer) -> Path | None:
    """The checkpoint to resume from: the one written at the last epoch end (last.ckpt), which
    resumes exactly; else the one written at the signal (mid-epoch: Lightning restarts that
    epoch's data); None when neither exists."""
    for callback in trainer.checkpoint_callbacks:
        # the `monitor: null` ModelCheckpoint keeps the latest epoch (conf/callbacks/default.yaml)
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            if callback.best_model_path and Path(callback.best_model_path).is_file():
                return Path(callback.best_model_path)
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, OnExceptionCheckpoint) and Path(callback.ckpt_path).is_file():
            return Path(callback.ckpt_path)
    return None


def resume_command(cfg: DictConfig, trainer: L.Trainer) -> str:
    """The command line that carries on the interrupted run (or sweep)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # tasks/sweep.py resumes the sweep's interrupted jobs from their last.ckpt
        argv = [a for a in sys.argv[1:] if a not in ("-m", "--multirun")]
        argv = [a for a in argv if not a.startswith("hydra.sweep.dir=")]
        return shlex.join(
            ["python", "train.py", "-m", *argv, f"hydra.sweep.dir={hydra_cfg.sweep.dir}"]
        )
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(("ckpt_path=", "mode="))]
    testing = cfg.mode == "test" or trainer.state.fn == "test"
    if testing:  # training (if any) had finished: evaluate the checkpoint it would have tested
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or cfg.ckpt_path
        return shlex.join(["python", "train.py", *overrides, "mode=test", f"ckpt_path={best}"])
    checkpoint = resume_checkpoint(trainer)
    if checkpoint is None:  # nothing saved: start again
        return shlex.join(["python", "train.py", *overrides])
    # in the same run folder: Lightning reloads the best-checkpoint ranking only when the
    # checkpoint folder is unchanged, and the test at the end must see the earlier epochs too
    overrides = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    run_dir = f"hydra.run.dir={cfg.paths.output_dir}"
    return shlex.join(["python", "train.py", *overrides, f"ckpt_path={checkpoint}", run_dir])


def record_interruption(
    cfg: DictConfig, task: L.LightningModule, trainer: L.Trainer, signum: int
) -> RunInterrupted:
    """Write results.json for an interrupted run, print how to resume, and return the exception
    that ends the run."""
    command = resume_command(cfg, trainer)
    choices = HydraConfig.get().runtime.choices
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    checkpoint = resume_checkpoint(trainer)
    record = {
        "job": HydraConfig.get().job.num if multirun else None,
        "status": "interrupted",
        "signal": signal.Signals(signum).name,
        "overrides": list(HydraConfig.get().overrides.task),
        "main_metric": task.main_metric,
        "main_metric_mode": task.mode,
        "metrics": metrics,  # the last logged train/ and val/ values: no test ran
        "choices": {k: choices.get(k) for k in ("backbone", "task", "data")}
        | {"model": cfg.backbone.name},
        "epochs": trainer.current_epoch,  # completed epochs
        "global_step": trainer.global_step,
        "resume_checkpoint": str(checkpoint) if checkpoint else None,
        "resume_command": command,
        "seed": cfg.seed,
        "mode": cfg.mode,
    }
    path = Path(cfg.paths.output_dir) / RESULTS_FILE
    write_results(path, record)
    print(
        f"\nRun interrupted by {record['signal']} after {record['epochs']} epoch(s); "
        f"results: {path}\nResume with:\n  {command}",
        flush=True,
    )
    return RunInterrupted(signum, command)
