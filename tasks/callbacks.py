"""Callbacks the zoo adds to Lightning's own."""

import time

import lightning as L
import torch


def _batch_images(batch) -> int:
    images = batch["image"] if isinstance(batch, dict) else batch[0]
    return len(images)


class Throughput(L.Callback):
    """Images per second of training steps (forward, backward, optimiser) and of test steps.

    Data loading is excluded: the clock runs from batch start to batch end. The first
    `warmup_batches` of each phase are skipped, as allocation and autotuning happen there.
    """

    def __init__(self, warmup_batches: int = 1):
        self.warmup_batches = warmup_batches
        self.seconds = {"train": 0.0, "test": 0.0}
        self.images = {"train": 0, "test": 0}
        self._seen = {"train": 0, "test": 0}
        self._start = 0.0

    def _begin(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def _end(self, phase: str, batch) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._seen[phase] += 1
        if self._seen[phase] > self.warmup_batches:
            self.seconds[phase] += time.perf_counter() - self._start
            self.images[phase] += _batch_images(batch)

    def images_per_second(self, phase: str) -> float | None:
        return self.images[phase] / self.seconds[phase] if self.seconds[phase] else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._begin()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end("train", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._begin()

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._end("test", batch)
