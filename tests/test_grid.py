"""The central claim: every backbone config x every task trains one step and validates one step.

`debug=fdr` runs one training, one validation and one test batch through train.run, on tiny
inputs. A pair that cannot work must be refused before training with a clear reason, and must be
listed in REFUSED below, so a new refusal is a decision, not an accident.
"""

import math

import pytest

import train
from tests.conftest import CONF

BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))

# overrides that make each task's embedded default data tiny
TINY = {
    "classification": ["data.batch_size=4"],
}

# (backbone config, task) -> the words the refusal must contain
REFUSED: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_runs_task(make_cfg, backbone, task):
    cfg = make_cfg(f"backbone={backbone}", f"task={task}", "debug=fdr", *TINY.get(task, []))
    if (backbone, task) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[backbone, task]):
            train.run(cfg)
        return
    results = train.run(cfg)
    value = results["metrics"][results["main_metric"]]
    assert math.isfinite(value)
    assert results["params"] > 0
