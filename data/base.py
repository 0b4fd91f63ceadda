"""What every datamodule shares: splits, loaders, normalisation and the task it serves."""

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import albumentations as A
import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


class DataError(ValueError):
    """A user's data file that cannot be used as it is; the message names the file and what was
    expected. Every reader's own error (corrupt image, bad mask, bad annotation ...) is one."""


@contextmanager
def reading(path: Path | str) -> Iterator[None]:
    """Re-raise any error of reading `path` as a `DataError` that names it.

    Readers check what they know to check, but a decoder or an augmentation can still fail on a
    file nobody foresaw; in a loader worker that would be a traceback without the file's name.
    """
    try:
        yield
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path}: cannot be used ({type(error).__name__}: {error})") from error


def reduce_channels(stats: Sequence[float], in_chans: int) -> tuple[float, ...]:
    """Fit per-channel statistics (usually the backbone's RGB mean/std) to `in_chans` channels.

    A grey-scale input takes the mean of the RGB statistics, as timm does when it adapts a stem.
    """
    stats = tuple(float(s) for s in stats)
    if len(stats) == in_chans:
        return stats
    if in_chans == 1:
        return (sum(stats) / len(stats),)
    return tuple(stats[i % len(stats)] for i in range(in_chans))


def evaluation_sampler(dataset: Dataset, trainer: L.Trainer | None) -> Sampler | None:
    """Under DDP, a sampler that gives each evaluation sample to exactly one process.

    Lightning's default (a `DistributedSampler`) pads the last batch with repeated samples so
    that every process gets as many: test metrics would count those twice. A set smaller than
    the number of processes is padded all the same: a process without a single batch would skip
    the epoch-end hooks where the others wait for it. In a single process, None (the loader's
    own sequential order).
    """
    if trainer is None or trainer.world_size == 1:
        return None
    share = dict(num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)
    if len(dataset) < trainer.world_size:
        return DistributedSampler(dataset, **share)
    return UnrepeatedDistributedSampler(dataset, **share)


def global_numpy_generator() -> np.random.Generator:
    """A numpy Generator drawing from the process's global bit generator.

    That bit generator is the one `np.random.seed` seeds: Lightning's `seed_everything` in the
    main process, its worker init function in each loader worker (a distinct seed per worker and
    epoch), and a checkpoint's saved RNG state on resume (tasks/rng_state.py). Randomness drawn
    here is therefore seeded, different in each worker, and restored with the checkpoint.
    """
    return np.random.Generator(np.random.get_bit_generator())


class Compose(A.Compose):
    """`albumentations.Compose` drawing from the process's global numpy and Python RNGs.

    An unseeded `A.Compose` seeds itself from the OS at creation: two runs with one seed augment
    differently, and a resumed run cannot replay its augmentation. A seeded one gives every loader
    worker the same stream. Pointing it at the global generators at each call (not once, so that
    a worker started by pickling the dataset uses its own) ties augmentation to the run's seed,
    the worker seeding and the RNG state a checkpoint restores.
    """

    def __call__(self, *args: Any, **data: Any) -> dict[str, Any]:
        # the `random` module's functions are the methods of its global Random instance
        self.set_random_state(global_numpy_generator(), random)  # type: ignore[arg-type]
        return super().__call__(*args, **data)


class BaseDataModule(L.LightningDataModule):
    """Shared loader plumbing. Subclasses build `self.datasets[split]` in `setup`.

    Args:
        batch_size: Total batch size, split over the processes of a distributed run.
        num_workers: Loader worker processes.
        seed: Seed of every random split and of synthetic data.
        mean: Per-channel normalisation mean (train.py passes the backbone's).
        std: Per-channel normalisation std.
    """

    #: The task this data serves; train.py refuses a (task, data) pair that differs.
    task: ClassVar[str]
    #: Config keys naming the files or folders read (a path or a glob): tasks/preflight.py
    #: checks that they exist before anything is built.
    input_keys: ClassVar[tuple[str, ...]] = ()
    #: Config keys naming the folders written (caches): preflight checks they can be written.
    cache_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
    ):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._mean, self._std = tuple(mean), tuple(std)
        self.datasets: dict[str, Dataset] = {}

    @property
    def in_chans(self) -> int:
        raise NotImplementedError

    @property
    def mean(self) -> tuple[float, ...]:
        return reduce_channels(self._mean, self.in_chans)

    @property
    def std(self) -> tuple[float, ...]:
        return reduce_channels(self._std, self.in_chans)

    @property
    def task_kwargs(self) -> dict:
        """What the task must know of the data (read by train.py, never written twice)."""
        return {"in_chans": self.in_chans}

    def denormalize(self, images: torch.Tensor) -> np.ndarray:
        """(B, C, H, W) normalised tensors -> (B, H, W, C) floats in [0, 1] for plotting."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        images = (images.float() * std + mean).clamp(0, 1)
        return images.permute(0, 2, 3, 1).cpu().numpy()

    def _dataloader_factory(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup("fit" if split in ("train", "val") else "test")
        world_size = self.trainer.world_size if self.trainer is not None else 1
        training = split == "train"
        return DataLoader(
            self.datasets[split],
            batch_size=max(self.batch_size // world_size, 1),
            shuffle=training,
            sampler=None if training else evaluation_sampler(self.datasets[split], self.trainer),
            drop_last=split == "train" and len(self.datasets[split]) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=getattr(self, "collate_fn", None),
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader_factory("train")

    def val_dataloader(self) -> DataLoader:
        return self._dataloader_factory("val")

    def test_dataloader(self) -> DataLoader:
        return self._dataloader_factory("test")
