"""mode=predict: run a trained checkpoint on new files and write what a person can use.

    python train.py mode=predict ckpt_path=CKPT input=PATH    # PATH: a file, a folder or a glob

Every checkpoint carries an inference record (`InferenceRecord`, plain data): the task's class,
the data config it was trained with, and the datamodule's test-time transform. Prediction needs
nothing else: not the training data, not the config of the run. The task's own
`write_predictions` turns the inputs into files in the run directory.

This module sits above tasks and data, as train.py does: it reads the inputs with data's readers
and hands them to the task, so that no task module imports data.
"""

import glob
import inspect
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import lightning as L
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from rich.progress import Progress

from data.images import IMAGE_SUFFIXES, read_image, verify_images

from .base import BaseTask
from .checkpoints import CheckpointError, load_checkpoint

#: The checkpoint entry that holds the inference record.
RECORD_KEY = "inference"

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")
SERIES_SUFFIXES = (".csv", ".txt", ".gz")
SUFFIXES = {"image": IMAGE_SUFFIXES, "video": VIDEO_SUFFIXES, "series": SERIES_SUFFIXES}


class InferenceRecord(L.Callback):
    """Stores in every checkpoint what using the model later needs, as plain data.

    Args:
        data_config: The resolved data config with the mean/std train.py gave it, so that
            mode=export rebuilds the same datamodule for its parity check.
    """

    def __init__(self, data_config: dict[str, Any]):
        self.data_config = data_config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        datamodule = trainer.datamodule
        transform = getattr(datamodule, "transform", None)
        task = type(pl_module)
        checkpoint[RECORD_KEY] = {
            "task": f"{task.__module__}.{task.__qualname__}",
            "data": self.data_config,
            "in_chans": datamodule.in_chans,
            "mean": list(datamodule.mean),
            "std": list(datamodule.std),
            # albumentations' own serialisation: the exact test-time pipeline, rebuilt later
            "transform": A.to_dict(transform(False)) if callable(transform) else None,
        }


def load_task(path: str | Path) -> tuple[BaseTask, dict[str, Any]]:
    """The task of a checkpoint, with its weights, in eval mode, and its inference record."""
    checkpoint = load_checkpoint(path)
    record = checkpoint.get(RECORD_KEY)
    if record is None:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} has no inference record (checkpoints written before "
            "mode=predict existed lack it): train it again, or evaluate it with mode=test"
        )
    task = get_class(record["task"])(**checkpoint["hyper_parameters"])
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval(), record


def build_datamodule(record: dict[str, Any]) -> L.LightningDataModule:
    """The datamodule the checkpoint was trained on (its data must still be where it was)."""
    return instantiate(record["data"], _convert_="all")


def find_inputs(pattern: str, suffixes: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """The files `pattern` names (a file, a folder searched recursively, or a glob) and their
    common folder, which output names are made relative to."""
    path = Path(pattern).expanduser()
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        root = path
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        root = Path(os.path.commonpath([f.parent for f in files])) if files else path.parent
    if not files:
        raise FileNotFoundError(
            f"input={pattern!r}: no {' / '.join(suffixes)} files there (give a file, a folder "
            "or a quoted glob such as 'photos/*.jpg')"
        )
    return root, files


@dataclass
class PredictionInputs:
    """The inputs of one mode=predict run, and the readers and transform a task applies to them.

    Attributes:
        root: The folder the inputs were found in; output names are relative to it.
        files: The input files, sorted.
        record: The checkpoint's inference record.
    """

    root: Path
    files: list[Path]
    record: dict[str, Any]

    def name(self, path: Path) -> str:
        """`path` relative to the input folder: the name a prediction is filed under."""
        return path.relative_to(self.root).as_posix()

    def output_path(self, folder: Path, path: Path, suffix: str = ".png") -> Path:
        """`folder/<name of path>` with its extension replaced by `suffix`, parents made."""
        target = folder / self.name(path)
        target = target.with_name(target.stem + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def batches(self, size: int = 1, files: list[Path] | None = None) -> Iterator[list[Path]]:
        """The files in chunks of `size`, behind a progress bar."""
        files = self.files if files is None else files
        with Progress(transient=True) as progress:
            bar = progress.add_task("predicting", total=len(files))
            for start in range(0, len(files), size):
                chunk = files[start : start + size]
                yield chunk
                progress.advance(bar, len(chunk))

    def read_image(self, path: Path) -> np.ndarray:
        """(H, W, C) uint8 with the channels the model was trained on."""
        return read_image(path, self.record["in_chans"])

    def transform(self) -> A.Compose:
        """The datamodule's test-time transform, as it was when the checkpoint was written."""
        if self.record["transform"] is None:
            raise CheckpointError(f"task {self.record['task']} has no albumentations transform")
        with warnings.catch_warnings():
            # albumentations 2.0 serialises PadIfNeeded's derived `padding` and then warns that
            # its own constructor does not take it; the rebuilt transform pads the same
            warnings.filterwarnings("ignore", message=r"Argument\(s\) 'padding' are not valid")
            return A.from_dict(self.record["transform"])

    def normalize(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, C) uint8 -> (1, C, H, W) normalised as the datamodule normalises."""
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        mean = torch.tensor(self.record["mean"]).view(-1, 1, 1)
        std = torch.tensor(self.record["std"]).view(-1, 1, 1)
        return ((pixels - mean) / std)[None]

    def read_video(self, path: Path) -> tuple[torch.Tensor, np.ndarray, float]:
        """Normalised frames (N, C, H, W) sampled and sized as in training, their frame indices
        in the file and its frame rate."""
        from data.surgical_video import decode_video

        data = self.record["data"]
        frames, indices, _, fps = decode_video(path, data.get("sample_fps", 1.0),
                                               data.get("image_size", 64))  # fmt: skip
        return torch.cat([self.normalize(f) for f in frames]), indices, fps

    def read_series(self, path: Path) -> dict[str, Any]:
        """Every window of the price file `path`, read by the training data's own reader (the
        data config with `path` replaced) and built with the checkpoint's settings.

        The inputs are standardised by the file's own first `split_fractions[0]`, as the training
        data were by theirs.

        Returns:
            `start` (N,) unix times of each window's last interval, `image` and `features`
            (the network's inputs), `realised_next` (N,) the realised volatility of the interval
            after each window (NaN after the last).
        """
        from data.volatility import HAR_LAGS

        data = self.record["data"]
        if "path" not in inspect.signature(get_class(data["_target_"]).__init__).parameters:
            raise CheckpointError(
                f"the checkpoint was trained on {data['_target_']}, which reads no file: "
                "mode=predict reads files of the training data's format (data=bars, "
                "binance_trades or lobster)"
            )
        series = instantiate({**data, "path": str(path)}, _convert_="all")
        series.setup("predict")
        samples = np.arange(max(series.window, HAR_LAGS[-1]) - 1, len(series.rv))
        return {
            "start": series.interval_start[samples],
            "image": series.window_inputs(samples),
            "features": torch.from_numpy(series.features_all[samples]),
            "realised_next": np.append(series.rv[samples[:-1] + 1], np.nan),
        }


def predict(ckpt_path: str, pattern: str, out_dir: Path) -> dict[str, Any]:
    """Run the checkpoint on the files of `pattern`; return what was read and written."""
    task, record = load_task(ckpt_path)
    root, files = find_inputs(pattern, SUFFIXES[task.predict_input])
    if task.predict_input == "image":
        verify_images(files)  # every unreadable file, by name, before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        written = task.write_predictions(PredictionInputs(root, files, record), out_dir)
    print(f"{task.name} predictions for {len(files)} input(s): {', '.join(map(str, written))}")
    return {
        "mode": "predict",
        "checkpoint": str(ckpt_path),
        "task": task.name,
        "inputs": len(files),
        "outputs": [str(p) for p in written],
    }
