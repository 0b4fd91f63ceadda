"""The fast paths work for every task: bf16 mixed precision, channels-last memory, torch.compile.

Each runs one training, validation and test step (`debug=fdr`) of every task's default backbone
on the grid's tiny data, as `python train.py task=T debug=fdr <switch>` would. Their speed-ups
are measured by `python -m benchmarks.overhead`, not here.
"""

import math

import pytest
import torch
from torch._dynamo.utils import counters

import train
from tasks.classification import ClassificationTask
from tests.test_grid import TASKS, TINY


def run_one_step(make_cfg, task: str, *switches: str) -> dict:
    results = train.run(make_cfg(f"task={task}", "debug=fdr", *switches, *TINY.get(task, [])))
    assert math.isfinite(results["metrics"][results["main_metric"]])
    return results


@pytest.mark.parametrize("task", TASKS)
def test_bf16_mixed_precision_runs_every_task(make_cfg, task):
    run_one_step(make_cfg, task, "trainer.precision=bf16-mixed")


@pytest.mark.parametrize("task", TASKS)
def test_channels_last_runs_every_task(make_cfg, task):
    run_one_step(make_cfg, task, "task.channels_last=true")


# Compiling with inductor generates and builds C++ for every new kernel shape: 60-340 s a task
# on 2 cores, and the kernels of a convolution are the same whatever task calls it. What is
# the task's own is how its network is reached and traced: every task runs dynamo and AOT
# autograd (`aot_eager`, no code generation), and one runs inductor end to end.
SMALL_BACKBONE = ["backbone=timm", "backbone.name=resnet10t"]


def compiles(make_cfg, task: str, backend: str) -> None:
    # dynamo reuses a graph compiled earlier in this worker for a network of the same structure
    # (detection and segmentation share a feature pyramid), so only a fresh cache shows whether
    # this task's run compiled its own
    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    run_one_step(make_cfg, task, f"task.compile={backend}", *SMALL_BACKBONE)
    assert counters["stats"]["unique_graphs"] > graphs  # the backbone ran compiled


@pytest.mark.slow  # tracing forward and backward: 5-30 s a task on 2 cores
@pytest.mark.parametrize("task", TASKS)
def test_every_task_compiles(make_cfg, task):
    compiles(make_cfg, task, "aot_eager")


@pytest.mark.slow  # inductor builds its C++ kernels: about 2 minutes on 2 cores
def test_inductor_compiles_and_trains(make_cfg):
    compiles(make_cfg, "classification", "true")


def small_classifier(**switches) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(num_classes=10, backbone="resnet10t", in_chans=1, **switches)


def test_channels_last_keeps_the_weights_and_the_outputs():
    plain, fast = small_classifier(), small_classifier(channels_last=True)
    convolutions = [p for p in fast.parameters() if p.ndim == 4]
    assert convolutions and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in convolutions
    )
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(images), plain.eval()(images), atol=1e-4, rtol=1e-4)


def test_a_compiled_task_keeps_its_checkpoint_keys():
    # a checkpoint of a compiled run loads into an uncompiled task, and back
    compiled = small_classifier(compile=True)
    assert compiled.state_dict().keys() == small_classifier().state_dict().keys()
    small_classifier().load_state_dict(compiled.state_dict())
