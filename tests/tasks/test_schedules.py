"""The time-aware warm-up + cosine schedule: it ends at the step budget or the time budget."""

import datetime

import pytest
import torch

from tasks import schedules
from tasks.schedules import budget_seconds, warmup_cosine_budget


def make(total_steps: int, **kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return warmup_cosine_budget(optimizer, total_steps, **kwargs)


def factor(scheduler, step: int) -> float:
    return scheduler.lr_lambdas[0](step)


@pytest.mark.parametrize(
    "max_time, seconds",
    [
        ("00:00:13:00", 780.0),
        ({"minutes": 13}, 780.0),
        (datetime.timedelta(hours=1), 3600.0),
        (None, None),
    ],
)
def test_budget_seconds_reads_lightning_max_time(max_time, seconds):
    assert budget_seconds(max_time) == seconds


def test_budget_seconds_refuses_other_values():
    with pytest.raises(ValueError, match="max_time must be"):
        budget_seconds(13)


def test_steps_only_warms_up_then_anneals_to_zero():
    scheduler = make(1000, warmup_fraction=0.1)
    assert factor(scheduler, 0) == pytest.approx(0.01)
    assert factor(scheduler, 99) == pytest.approx(1.0)
    assert factor(scheduler, 550) == pytest.approx(0.5)
    assert factor(scheduler, 1000) == pytest.approx(0.0)


def test_time_budget_ends_the_schedule_before_the_steps(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(schedules.time, "monotonic", lambda: clock[0])
    scheduler = make(1000, warmup_fraction=0.1, max_time={"seconds": 60})
    assert factor(scheduler, 10) < 1  # early: warming up by steps
    clock[0] += 33  # 55% of the time gone at step 10 of 1000
    assert factor(scheduler, 10) == pytest.approx(0.5)
    clock[0] += 27  # all of it
    assert factor(scheduler, 11) == pytest.approx(0.0)


def test_a_resumed_schedule_continues_the_clock_of_its_checkpoint(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(schedules.time, "monotonic", lambda: clock[0])
    budget = {"seconds": 100}
    first = make(10**6, warmup_fraction=0.1, max_time=budget)  # steps never end it: time does
    clock[0] += 55  # 55 of the 100 s trained
    state = first.state_dict()
    assert state["elapsed_before"] == pytest.approx(55)
    expected = factor(first, 10)

    clock[0] += 3600  # the job waits an hour in the queue; then a new process resumes
    resumed = make(10**6, warmup_fraction=0.1, max_time=budget)
    assert factor(resumed, 10) < 1  # a fresh clock would warm up again
    resumed.load_state_dict(state)
    assert factor(resumed, 10) == pytest.approx(expected) == pytest.approx(0.5)
    clock[0] += 45  # the rest of the budget, in the new process
    assert factor(resumed, 11) == pytest.approx(0.0)
