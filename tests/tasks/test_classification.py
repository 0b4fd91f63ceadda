"""The classification task alone, on a stand-in backbone."""

import torch

from tasks.classification import ClassificationTask


def test_top5_is_not_merged_with_top1_after_a_perfect_first_batch():
    task = ClassificationTask(num_classes=10, backbone="resnet18", in_chans=1)
    logits = torch.eye(10) * 10  # first batch: every prediction right
    task.test_metrics.update(logits, torch.arange(10))
    wrong_top1 = torch.zeros(10, 10)
    wrong_top1[:, 0] = 10
    wrong_top1[torch.arange(10), torch.arange(10)] = 5  # truth ranked second
    task.test_metrics.update(wrong_top1, torch.arange(10))
    metrics = task.test_metrics.compute()
    assert metrics["test/acc"] == 0.55  # 10 right, then only class 0 right
    assert metrics["test/acc_top5"] == 1.0
