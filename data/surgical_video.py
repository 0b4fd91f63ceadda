"""Surgical video data: Cholec80, a folder of videos with per-frame CSVs, synthetic surgeries.

Every datamodule yields clips: `{"image": (B, T, 3, H, W) float, "phase": (B, T) long,
"tools": (B, T, K) float, "mask": (B, T) bool, "video": (B,) long, "frame": (B, T) long}`.
`mask` marks the frames a clip scores: evaluation clips tile each video without overlap (the
last one ends on the last frame), so every sampled frame of a test video is scored exactly once.

Videos are decoded with PyAV (FFmpeg's libraries, the decoder torchvision and torchcodec build
on; it reads any container and codec FFmpeg does, on any platform, with no GPU) at `sample_fps`
frames per second, resized to `image_size`, and cached once per video as a `.npy` file keyed by
the file, its modification time and the sampling; later runs and every epoch read the cache.
"""

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .base import BaseDataModule, DataError, global_numpy_generator, reading
from .synth.surgical_video import PHASES, TOOLS, generate_cholec80

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
DEFAULT_CACHE = "~/.cache/convzoo"


class VideoDataError(DataError):
    """A video or label file that cannot be used; the message names the file."""


@dataclass
class VideoRecord:
    """One decoded video: `frames` (N, S, S, 3) uint8 sampled at the data's rate, `phases` (N,)
    int64, `tools` (N, K) float32 (K may be 0), and `indices` (N,) of the frames in the file."""

    name: str
    frames: np.ndarray
    phases: np.ndarray
    tools: np.ndarray
    indices: np.ndarray


def decode_video(
    path: Path, sample_fps: float | None, size: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Decode `path` at `sample_fps` (None: every frame), resized to `size` x `size`.

    Returns `(frames (N, S, S, 3) uint8 RGB, indices (N,) of the kept frames, total frames in the
    file, the file's frame rate)`. With a `cache_dir`, the result is written there once and read
    back on every later call for the same file (same modification time) and sampling.

    Raises:
        VideoDataError: the file does not exist or does not decode.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDataError(f"{path}: no such video file")
    cache = None
    if cache_dir is not None:
        key = f"{path.resolve()}|{path.stat().st_mtime_ns}|{sample_fps}|{size}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        cache = Path(cache_dir).expanduser() / "frames" / f"{path.stem}-{digest}"
        cached = read_frame_cache(cache, path)
        if cached is not None:
            return cached
    import av

    frames, indices = [], []
    total = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDataError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            step = 1.0 if not sample_fps or sample_fps >= fps else fps / sample_fps
            next_kept = 0.0
            for frame in container.decode(stream):
                if total >= next_kept - 1e-6:
                    image = frame.to_ndarray(format="rgb24")
                    frames.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
                    indices.append(total)
                    next_kept += step
                total += 1
    except av.FFmpegError as error:
        raise VideoDataError(f"{path}: the video does not decode ({error})") from error
    if total == 0:
        raise VideoDataError(f"{path}: the video has no decodable frames")
    result = (np.stack(frames), np.asarray(indices, np.int64), total, fps)
    if cache is not None:
        write_frame_cache(cache, path, result)
    return result


def read_frame_cache(cache: Path, video: Path) -> tuple[np.ndarray, np.ndarray, int, float] | None:
    """The cached decoding of `video`, or None when there is none or it is unreadable.

    An unreadable cache (a disk that filled up, a copy cut short) is removed with a warning, so
    that the video is decoded again and the cache rewritten, instead of failing on every run.
    """
    if not (cache / "meta.json").is_file():
        return None
    try:
        meta = json.loads((cache / "meta.json").read_text())
        frames, indices = np.load(cache / "frames.npy"), np.load(cache / "indices.npy")
        if frames.ndim != 4 or frames.shape[0] != len(indices):
            raise ValueError(f"{frames.shape[0]} frames for {len(indices)} frame indices")
        return frames, indices, int(meta["total"]), float(meta["fps"])
    except (OSError, ValueError, EOFError, KeyError, TypeError) as error:
        log.warning("%s: unreadable frame cache of %s (%s); decoding it again", cache, video, error)
        discard_folder(cache)
        return None


def write_frame_cache(
    cache: Path, video: Path, decoded: tuple[np.ndarray, np.ndarray, int, float]
) -> None:
    """Cache a decoding; a cache that cannot be written costs time on the next run, not this run."""
    frames, indices, total, fps = decoded
    try:
        with staged_folder(cache) as staging:
            np.save(staging / "frames.npy", frames)
            np.save(staging / "indices.npy", indices)
            (staging / "meta.json").write_text(json.dumps({"total": total, "fps": fps}))
    except OSError as error:
        log.warning("%s: cannot cache the frames of %s (%s); not cached", cache, video, error)


def discard_folder(folder: Path) -> None:
    """Remove `folder`: first renamed aside, so no reader sees it half-deleted."""
    aside = folder.with_name(f".{folder.name}-discarded-{os.getpid()}")
    try:
        folder.rename(aside)
    except OSError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A folder to write into, renamed to `final` when complete.

    Several processes (test workers, DDP ranks, data-loader workers) may fill the same cache at
    once: each writes a staging folder of its own, and the first rename wins, so no reader ever
    sees half-written files. A `final` left without the process that made it is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        yield staging
        try:
            staging.rename(final)
        except OSError:  # another process got there first: its copy is as good as ours
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_finite(path: Path, values: np.ndarray, first_line: int) -> None:
    """Tool labels are 0/1 presence: a NaN would reach the loss as a NaN."""
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise VideoDataError(
            f"{path}, line {first_line + int(np.argmax(bad))}: a tool value is not a finite number"
        )


def _check_frame_count(path: Path, rows: int, total: int, tolerance: int) -> None:
    if abs(rows - total) > tolerance:
        raise VideoDataError(
            f"{path}: {rows} labelled frames, but the video has {total} frames "
            f"(allowed difference: data.frame_tolerance={tolerance})"
        )


def _phase_index(path: Path, line: int, name: str, phases: Sequence[str]) -> int:
    try:
        return phases.index(name)
    except ValueError:
        raise VideoDataError(
            f"{path}, line {line}: unknown phase {name!r}; known phases: {', '.join(phases)}"
        ) from None


def read_cholec80_phases(path: Path, total: int, phases: Sequence[str],
                         tolerance: int = 0) -> np.ndarray:  # fmt: skip
    """Per-frame phase indices from a Cholec80 `videoNN-phase.txt` (`Frame<TAB>Phase` rows).

    Frames past the last row (within `tolerance`) take the last row's phase.
    """
    if not path.is_file():
        raise VideoDataError(f"{path}: no such phase annotation file")
    with reading(path):
        lines = path.read_text().split("\n")
    if lines[0].split()[:2] != ["Frame", "Phase"]:
        raise VideoDataError(f"{path}: expected a 'Frame<TAB>Phase' header, got {lines[0]!r}")
    rows = [(i + 2, line.split()) for i, line in enumerate(lines[1:]) if line.strip()]
    short = next((number for number, fields in rows if len(fields) < 2), None)
    if short is not None:
        raise VideoDataError(f"{path}, line {short}: expected a frame and a phase")
    if not rows:
        raise VideoDataError(f"{path}: no labelled frames")
    labels = [_phase_index(path, number, fields[1], phases) for number, fields in rows]
    _check_frame_count(path, len(labels), total, tolerance)
    labels = labels[:total] + labels[-1:] * (total - len(labels))
    return np.asarray(labels, np.int64)


def read_cholec80_tools(path: Path, indices: np.ndarray, tools: Sequence[str]) -> np.ndarray:
    """Tool presence (len(indices), K) at the frames `indices`, from a `videoNN-tool.txt`.

    Cholec80 annotates every 25th frame; a frame takes the last annotated row at or before it.
    """
    if not path.is_file():
        raise VideoDataError(f"{path}: no such tool annotation file")
    with reading(path):
        rows = [line.split() for line in path.read_text().split("\n") if line.strip()]
    header = rows[0] if rows else []
    if header[:1] != ["Frame"] or header[1:] != list(tools):
        raise VideoDataError(
            f"{path}: expected the header 'Frame {' '.join(tools)}', got {' '.join(header)!r}"
        )
    try:
        frames = np.asarray([int(r[0]) for r in rows[1:]])
        values = np.asarray([[float(v) for v in r[1:]] for r in rows[1:]], np.float32)
    except ValueError as error:
        raise VideoDataError(f"{path}: non-numeric tool annotation ({error})") from error
    if len(frames) == 0 or values.shape[1:] != (len(tools),):
        raise VideoDataError(f"{path}: every row needs a frame and {len(tools)} tool values")
    check_finite(path, values, first_line=2)
    row = np.clip(np.searchsorted(frames, indices, side="right") - 1, 0, len(frames) - 1)
    return values[row]


class ClipDataset(Dataset):
    """Clips of `frames` consecutive sampled frames from decoded videos.

    Training clips start every `stride` frames; evaluation clips tile each video (stride =
    `frames`, the last clip aligned to the video's end, `mask` set on the frames not yet scored).
    Training augmentation is the same for every frame of a clip: a random resized crop, a
    horizontal flip and a brightness/contrast change.
    """

    def __init__(self, videos: Sequence[VideoRecord], frames: int, train: bool,
                 mean: Sequence[float], std: Sequence[float], stride: int = 1):  # fmt: skip
        self.videos, self.frames, self.train = list(videos), frames, train
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.clips: list[tuple[int, int, int]] = []  # (video, start, first frame not yet scored)
        for v, video in enumerate(self.videos):
            n = len(video.phases)
            if train:
                starts = range(0, max(n - frames, 0) + 1, max(stride, 1))
                self.clips += [(v, s, s) for s in starts]
                continue
            covered = 0
            for start in range(0, n, frames):
                start = max(min(start, n - frames), 0)
                self.clips.append((v, start, covered))
                covered = start + frames

    def __len__(self) -> int:
        return len(self.clips)

    def _augment(self, frames: np.ndarray) -> np.ndarray:
        _, h, w, _ = frames.shape
        rng = global_numpy_generator()  # seeded, per worker, restored on resume (see there)
        scale = rng.uniform(0.6, 1.0)
        ch, cw = int(h * np.sqrt(scale)), int(w * np.sqrt(scale))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        flip = rng.random() < 0.5
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        out = np.empty_like(frames)
        for i, frame in enumerate(frames):
            crop = cv2.resize(frame[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
            out[i] = crop[:, ::-1] if flip else crop
        return np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        v, start, covered = self.clips[index]
        video = self.videos[v]
        n = len(video.phases)
        positions = np.arange(start, start + self.frames)
        valid = positions < n  # a video shorter than a clip repeats its last frame, unscored
        positions = np.minimum(positions, n - 1)
        frames = video.frames[positions]
        if self.train:
            frames = self._augment(frames)
        image = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
        return {
            "image": (image - self.mean) / self.std,
            "phase": torch.from_numpy(video.phases[positions]),
            "tools": torch.from_numpy(video.tools[positions]),
            "mask": torch.from_numpy(valid & (np.arange(start, start + self.frames) >= covered)),
            "video": torch.tensor(v),
            "frame": torch.from_numpy(positions),
        }


@dataclass
class VideoSource:
    """A video file and how to read its labels once its frames are decoded.

    `labels(total, indices)` returns `(phases (N,), tools (N, K))` for the kept frame indices.
    """

    name: str
    path: Path
    labels: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]


class SurgicalVideoDataModule(BaseDataModule):
    """Shared decoding, caching and clip sampling; subclasses list `sources(split)`.

    Args:
        clip_frames: Frames per clip (T).
        sample_fps: Frames per second kept from the videos (Cholec80 work uses 1).
        image_size: Side of the square frames the model sees.
        train_stride: Sampled frames between the starts of two training clips.
        frame_tolerance: Allowed difference between the labelled and the decoded frame count.
        cache_dir: Where decoded frames (and synthetic videos) are cached.
        **kwargs: See `BaseDataModule`.
    """

    cache_keys = ("cache_dir",)

    task = "surgical_video"

    def __init__(self, clip_frames: int = 8, sample_fps: float | None = 1.0, image_size: int = 64,
                 train_stride: int = 2, frame_tolerance: int = 0,
                 cache_dir: str | None = DEFAULT_CACHE, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.clip_frames, self.sample_fps, self.image_size = clip_frames, sample_fps, image_size
        self.train_stride, self.frame_tolerance = train_stride, frame_tolerance
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.phase_names: list[str] = list(PHASES)
        self.tool_names: list[str] = list(TOOLS)
        self.videos: dict[str, list[VideoRecord]] = {}

    @property
    def in_chans(self) -> int:
        return 3

    @property
    def num_classes(self) -> int:
        return len(self.phase_names)

    @property
    def task_kwargs(self) -> dict:
        return {
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "class_names": self.phase_names,
            "tool_names": self.tool_names,
            "num_frames": self.clip_frames,
        }

    def sources(self, split: str) -> list[VideoSource]:
        raise NotImplementedError

    def load(self, source: VideoSource) -> VideoRecord:
        """Decode (or read from the cache) one video and its labels."""
        frames, indices, total, _ = decode_video(source.path, self.sample_fps, self.image_size,
                                                 self.cache_dir)  # fmt: skip
        phases, tools = source.labels(total, indices)
        return VideoRecord(source.name, frames, phases, tools.astype(np.float32), indices)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split in ("train", "val", "test"):
            self.videos[split] = [self.load(s) for s in self.sources(split)]
            if not self.videos[split]:
                raise VideoDataError(f"no {split} videos: {self.describe()}")
            self.datasets[split] = ClipDataset(
                self.videos[split], self.clip_frames, split == "train", self.mean, self.std,
                stride=self.train_stride,
            )  # fmt: skip

    def describe(self) -> str:
        return type(self).__name__


def parse_numbers(spec: str | int | Sequence[int]) -> list[int]:
    """Video numbers from `"1-32"`, `"1-3,7"`, an int or a list of ints."""
    if isinstance(spec, int):
        return [spec]
    if not isinstance(spec, str):
        return [int(v) for v in spec]
    numbers = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(f"video numbers must look like '1-32' or '1-3,7', got {spec!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        numbers += range(first, last + 1)
    return numbers


class Cholec80DataModule(SurgicalVideoDataModule):
    """Cholec80 (Twinanda et al., EndoNet, arXiv 1602.03012) in its released layout.

        root/videos/video01.mp4 ...
        root/phase_annotations/video01-phase.txt    Frame<TAB>Phase, one row per frame (25 fps)
        root/tool_annotations/video01-tool.txt      Frame<TAB>Grasper ... SpecimenBag, every 25th

    Args:
        root: The Cholec80 folder.
        splits: Video numbers per split, e.g. the common 32/8/40 split (the default).
        **kwargs: See `SurgicalVideoDataModule`.
    """

    input_keys = ("root",)

    def __init__(self, root: str, splits: dict[str, str | Sequence[int]] | None = None,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        splits = splits or {"train": "1-32", "val": "33-40", "test": "41-80"}
        self.splits = {split: parse_numbers(spec) for split, spec in splits.items()}

    def describe(self) -> str:
        return f"Cholec80 at data.root={str(self.root)!r}, splits {self.splits}"

    def sources(self, split: str) -> list[VideoSource]:
        if not (self.root / "videos").is_dir():
            raise FileNotFoundError(
                f"No Cholec80 videos at data.root={str(self.root)!r}: expected videos/, "
                "phase_annotations/ and tool_annotations/ (request the data set at "
                "http://camma.u-strasbg.fr/datasets and set data.root=<folder>)"
            )
        return [self._source(number) for number in self.splits.get(split, [])]

    def _source(self, number: int) -> VideoSource:
        stem = f"video{number:02d}"
        path = next((p for p in sorted((self.root / "videos").glob(f"{stem}.*"))
                     if p.suffix.lower() in VIDEO_SUFFIXES), self.root / "videos" / f"{stem}.mp4")  # fmt: skip
        phase_file = self.root / "phase_annotations" / f"{stem}-phase.txt"
        tool_file = self.root / "tool_annotations" / f"{stem}-tool.txt"

        def labels(total: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            phases = read_cholec80_phases(phase_file, total, self.phase_names,
                                          self.frame_tolerance)  # fmt: skip
            return phases[indices], read_cholec80_tools(tool_file, indices, self.tool_names)

        return VideoSource(stem, path, labels)


class SyntheticSurgeryDataModule(Cholec80DataModule):
    """Synthetic cholecystectomies (see `data.synth.surgical_video`), written once as Cholec80.

    The videos are rendered and encoded (H.264 mp4 through PyAV) into
    `cache_dir/synthetic_surgery/<hash of the settings>/` on first use, then read back by the
    Cholec80 reader like real data.

    Args:
        videos: Videos per split, e.g. `{"train": 8, "val": 2, "test": 3}`.
        seconds: Range of video lengths in seconds.
        render_size: Side of the rendered frames.
        fps: Frame rate of the written videos.
        background: `retina` or `immunohistochemistry`: the bundled tissue photograph.
        root: Where to write the videos (default: under `cache_dir`).
        **kwargs: See `SurgicalVideoDataModule`.
    """

    input_keys = ()
    cache_keys = ("cache_dir", "root")

    def __init__(self, videos: dict[str, int] | None = None,
                 seconds: Sequence[float] = (150.0, 240.0), render_size: int = 64,
                 fps: float = 5.0, background: str = "retina", root: str | None = None,
                 **kwargs):  # fmt: skip
        self.counts = dict(videos or {"train": 8, "val": 2, "test": 3})
        self.render = {"seconds": tuple(float(s) for s in seconds), "size": render_size,
                       "fps": fps, "background": background}  # fmt: skip
        seed = kwargs.get("seed", 0)
        settings = json.dumps({**self.render, "counts": self.counts, "seed": seed}, sort_keys=True)
        folder = f"synthetic_surgery/{hashlib.sha1(settings.encode()).hexdigest()[:12]}"
        cache_dir = Path(kwargs.get("cache_dir") or DEFAULT_CACHE).expanduser()
        first, splits = 1, {}
        for split in ("train", "val", "test"):
            splits[split] = list(range(first, first + self.counts.get(split, 0)))
            first += self.counts.get(split, 0)
        super().__init__(root=root or str(cache_dir / folder), splits=splits, **kwargs)

    def describe(self) -> str:
        return f"synthetic surgeries at {self.root}, videos per split {self.counts}"

    def prepare_data(self) -> None:
        if (self.root / "complete.json").is_file():
            return
        # staged folders arrive whole, marker included: a folder without it is not ours, and
        # may be a user's (data.root=...): never deleted
        if self.root.exists() and any(self.root.iterdir()):
            raise DataError(
                f"data.root={str(self.root)!r} holds files but no synthetic set (no "
                "complete.json): point data.root at a new or empty folder for synthetic videos"
            )
        with staged_folder(self.root) as staging:
            generate_cholec80(staging, self.counts, **self.render, seed=self.seed)
            (staging / "complete.json").write_text(
                json.dumps({**self.render, "counts": self.counts})
            )

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # also when setup is called without a Trainer (tests, scripts)
        super().setup(stage)


class VideoFolderDataModule(SurgicalVideoDataModule):
    """Any videos with a per-frame label CSV beside each, in split folders.

        root/train/case_a.mp4   root/train/case_a.csv    frame,phase[,tool columns ...]
        root/val/...            root/test/...

    A CSV has one row per video frame (`frame` 0..N-1 in order); tool columns hold 0/1.

    Args:
        root: The folder.
        phases: Phase names in order; None: the sorted names found in the training CSVs.
        tools: Tool column names; None: every column after `phase` in the first CSV.
        **kwargs: See `SurgicalVideoDataModule`.
    """

    input_keys = ("root",)

    def __init__(self, root: str, phases: Sequence[str] | None = None,
                 tools: Sequence[str] | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        missing = [s for s in ("train", "val", "test") if not (self.root / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"data.root={str(self.root)!r} needs train/, val/ and test/ folders of videos "
                f"with a <name>.csv beside each; missing: {', '.join(missing)}"
            )
        self.files = {split: self._pairs(split) for split in ("train", "val", "test")}
        if not self.files["train"]:
            raise VideoDataError(f"{self.root / 'train'}: no videos ({', '.join(VIDEO_SUFFIXES)})")
        headers = {c: _csv_header(c) for pairs in self.files.values() for _, c in pairs}
        self.tool_names = (
            list(tools) if tools is not None else headers[self.files["train"][0][1]][2:]
        )
        for label_file, header in headers.items():
            missing = [c for c in ("frame", "phase", *self.tool_names) if c not in header]
            if header[:2] != ["frame", "phase"] or missing:
                raise VideoDataError(
                    f"{label_file}: expected the header 'frame,phase"
                    f"{''.join(',' + t for t in self.tool_names)}', got {','.join(header)!r}"
                )
        if phases is None:
            names = {row["phase"] for _, c in self.files["train"] for row in _read_rows(c)}
            phases = sorted(names)
        self.phase_names = list(phases)

    def describe(self) -> str:
        return f"video folder at data.root={str(self.root)!r}"

    def _pairs(self, split: str) -> list[tuple[Path, Path]]:
        videos = sorted(p for p in (self.root / split).iterdir()
                        if p.suffix.lower() in VIDEO_SUFFIXES)  # fmt: skip
        missing = [v.name for v in videos if not v.with_suffix(".csv").is_file()]
        if missing:
            raise FileNotFoundError(f"{self.root / split}: no label CSV for {', '.join(missing)}")
        return [(v, v.with_suffix(".csv")) for v in videos]

    def sources(self, split: str) -> list[VideoSource]:
        return [self._source(video, labels) for video, labels in self.files[split]]

    def _source(self, video: Path, label_file: Path) -> VideoSource:
        def labels(total: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows = _read_rows(label_file)
            _check_frame_count(label_file, len(rows), total, self.frame_tolerance)
            rows = rows[:total] + rows[-1:] * (total - len(rows))
            phases = np.asarray([_phase_index(label_file, i + 2, r["phase"], self.phase_names)
                                 for i, r in enumerate(rows)])  # fmt: skip
            try:
                tools = np.asarray([[float(r[t]) for t in self.tool_names] for r in rows])
            except (KeyError, TypeError, ValueError) as error:
                raise VideoDataError(f"{label_file}: bad tool column ({error})") from error
            tools = tools.reshape(len(rows), len(self.tool_names))
            check_finite(label_file, tools, first_line=2)
            return phases[indices], tools[indices]

        return VideoSource(video.stem, video, labels)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with reading(path), path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise VideoDataError(f"{path}: no labelled frames")
    return rows


def _csv_header(path: Path) -> list[str]:
    with reading(path), path.open(newline="") as f:
        return next(csv.reader(f), [])
