"""Learning-rate schedules that end with the run, whether the run is bounded by steps or by time.

`tasks.base.warmup_cosine` anneals over the planned steps. A run under `trainer.max_time` may be
stopped long before them on a slow machine (or a slow model), its learning rate still high. The
schedule here measures progress as the larger of the two fractions, steps done over planned and
time spent over the budget, so the rate reaches zero at whichever end comes first: a fast model
trains its full epochs, a slow one anneals over the time it has.
"""

import datetime
import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

Duration = str | Mapping | datetime.timedelta | None


def budget_seconds(max_time: Duration) -> float | None:
    """Seconds of a Lightning `max_time` ("DD:HH:MM:SS", a timedelta, or {"minutes": 13})."""
    match max_time:
        case None:
            return None
        case datetime.timedelta():
            return max_time.total_seconds()
        case str():
            days, hours, minutes, seconds = (int(v) for v in max_time.split(":"))
            return datetime.timedelta(
                days=days, hours=hours, minutes=minutes, seconds=seconds
            ).total_seconds()
        case Mapping():
            return datetime.timedelta(**dict(max_time)).total_seconds()
        case _:
            raise ValueError(
                f"max_time must be 'DD:HH:MM:SS', a timedelta or a dict, got {max_time!r}"
            )


class WarmupCosineBudget(LambdaLR):
    """Linear warm-up over `warmup_fraction` of the run, then cosine decay to zero at its end.

    The clock counts the seconds of training so far, across processes: a checkpoint stores the
    elapsed time, and a run resumed from it continues the schedule where it stopped (as
    Lightning's own `Timer` continues `max_time`), rather than restarting it. The time between
    the two processes is not counted.

    Args:
        optimizer: The optimiser.
        total_steps: The planned optimiser steps (from max_epochs).
        warmup_fraction: Part of the run spent warming up.
        max_time: The run's time budget (pass `${trainer.max_time}`), or None for steps only.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.02,
        max_time: Duration = None,
    ):
        self.total_steps, self.warmup_fraction = total_steps, warmup_fraction
        self.budget = budget_seconds(max_time)
        self.elapsed_before = 0.0  # seconds spent by earlier processes (from a checkpoint)
        self._started = time.monotonic()  # the scheduler is built as fitting starts
        super().__init__(optimizer, self.factor)

    def elapsed_seconds(self) -> float:
        return self.elapsed_before + time.monotonic() - self._started

    def factor(self, step: int) -> float:
        progress = step / max(1, self.total_steps)
        if self.budget:
            progress = max(progress, self.elapsed_seconds() / self.budget)
        progress = min(1.0, progress)
        warmup = self.warmup_fraction
        if progress < warmup:
            return min(1.0, (progress + 1 / max(1, self.total_steps)) / warmup)
        return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))

    def state_dict(self) -> dict[str, Any]:
        # the plan (steps, budget) is the resumed run's own, as with a closure; only progress is saved
        plan = ("total_steps", "warmup_fraction", "budget", "_started")
        state = {k: v for k, v in super().state_dict().items() if k not in plan}
        return state | {"elapsed_before": self.elapsed_seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._started = time.monotonic()


def warmup_cosine_budget(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.02,
    max_time: Duration = None,
) -> WarmupCosineBudget:
    """The `WarmupCosineBudget` schedule (the name the task configs call)."""
    return WarmupCosineBudget(optimizer, total_steps, warmup_fraction, max_time)
