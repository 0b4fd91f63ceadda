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


def warmup_cosine_budget(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.02,
    max_time: Duration = None,
) -> LambdaLR:
    """Linear warm-up over `warmup_fraction` of the run, then cosine decay to zero at its end.

    Args:
        optimizer: The optimiser.
        total_steps: The planned optimiser steps (from max_epochs).
        warmup_fraction: Part of the run spent warming up.
        max_time: The run's time budget (pass `${trainer.max_time}`), or None for steps only.
    """
    budget = budget_seconds(max_time)
    start = time.monotonic()  # the scheduler is built as fitting starts

    def factor(step: int) -> float:
        progress = step / max(1, total_steps)
        if budget:
            progress = max(progress, (time.monotonic() - start) / budget)
        progress = min(1.0, progress)
        if progress < warmup_fraction:
            return min(1.0, (progress + 1 / max(1, total_steps)) / warmup_fraction)
        return 0.5 * (1 + math.cos(math.pi * (progress - warmup_fraction) / (1 - warmup_fraction)))

    return LambdaLR(optimizer, factor)
