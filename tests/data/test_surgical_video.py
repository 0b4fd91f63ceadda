"""Surgical video data: the synthetic surgeries, the Cholec80 and folder readers (real mp4 files
written with PyAV), the frame cache, the clip tiling and the errors a user can cause."""

import csv
from pathlib import Path

import numpy as np
import pytest

from data.base import DataError
from data.surgical_video import (
    Cholec80DataModule,
    ClipDataset,
    SyntheticSurgeryDataModule,
    VideoDataError,
    VideoFolderDataModule,
    VideoRecord,
    decode_video,
    parse_numbers,
)
from data.synth.surgical_video import (
    PHASE_TOOLS,
    PHASES,
    TOOLS,
    render_video,
    write_cholec80,
    write_mp4,
)


@pytest.fixture(scope="module")
def video():
    return render_video(30, np.random.default_rng(3), size=32, fps=5)


@pytest.fixture(scope="module")
def cholec80(tmp_path_factory, video) -> Path:
    root = tmp_path_factory.mktemp("cholec80")
    for number in (1, 2, 3):
        write_cholec80(root, video, number)
    return root


def test_synthetic_phases_run_in_order_with_their_tools(video):
    phases = video.phases
    assert len(phases) == len(video.frames) == len(video.tools) == 150
    assert (np.diff(phases) >= 0).all() and set(phases) == set(range(len(PHASES)))
    for p, allowed in enumerate(PHASE_TOOLS):
        used = video.tools[phases == p].any(0)
        assert {TOOLS[k] for k in np.flatnonzero(used)} <= set(allowed)
    assert video.frames.dtype == np.uint8 and video.frames.shape[1:] == (32, 32, 3)


def test_cholec80_reader_returns_the_written_labels(cholec80, video, tmp_path):
    dm = Cholec80DataModule(str(cholec80), splits={"train": "1", "val": [2], "test": 3},
                            clip_frames=4, image_size=32, cache_dir=str(tmp_path))  # fmt: skip
    dm.setup()
    record = dm.videos["test"][0]
    # 5 fps video read at 1 fps: every 5th frame, labels taken at those frames
    np.testing.assert_array_equal(record.indices, np.arange(0, 150, 5))
    np.testing.assert_array_equal(record.phases, video.phases[::5])
    np.testing.assert_array_equal(record.tools, video.tools[::5])
    # lossy H.264, but the picture survives
    error = np.abs(record.frames.astype(int) - video.frames[::5].astype(int)).mean()
    assert error < 12
    batch = dm.datasets["train"][0]
    assert batch["image"].shape == (4, 3, 32, 32) and batch["tools"].shape == (4, len(TOOLS))
    assert dm.task_kwargs["num_classes"] == 7 and dm.task_kwargs["num_frames"] == 4


def test_frames_are_decoded_once_then_read_from_the_cache(cholec80, tmp_path, monkeypatch):
    path = cholec80 / "videos" / "video01.mp4"
    first = decode_video(path, 1.0, 32, tmp_path)
    import av

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(av, "open", no_decoding)
    second = decode_video(path, 1.0, 32, tmp_path)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[2:] == second[2:] == (150, 5.0)


def test_evaluation_clips_score_every_frame_once():
    n, t = 23, 8
    record = VideoRecord("v", np.zeros((n, 8, 8, 3), np.uint8), np.arange(n) % 7,
                         np.zeros((n, 0), np.float32), np.arange(n))  # fmt: skip
    dataset = ClipDataset([record], t, train=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    scored = np.concatenate([d["frame"][d["mask"]].numpy() for d in dataset])
    np.testing.assert_array_equal(np.sort(scored), np.arange(n))


def test_a_video_that_does_not_decode_is_named(cholec80, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDataError, match="broken.mp4.*does not decode"):
        decode_video(broken, 1.0, 32)


def test_label_rows_that_differ_from_the_frames_are_named(cholec80, tmp_path):
    root = tmp_path / "c80"
    (root / "videos").mkdir(parents=True)
    for folder in ("videos", "phase_annotations", "tool_annotations"):
        (root / folder).mkdir(exist_ok=True)
        for source in (cholec80 / folder).glob("video01*"):
            (root / folder / source.name).write_bytes(source.read_bytes())
    phase_file = root / "phase_annotations" / "video01-phase.txt"
    phase_file.write_text("\n".join(phase_file.read_text().split("\n")[:-10]) + "\n")
    dm = Cholec80DataModule(str(root), splits={"train": "1", "val": "1", "test": "1"},
                            cache_dir=None, image_size=32)  # fmt: skip
    with pytest.raises(VideoDataError, match="video01-phase.txt: 141 labelled frames.*150"):
        dm.setup()


def test_an_unknown_phase_is_named(cholec80, tmp_path):
    root = tmp_path / "c80"
    for folder in ("videos", "phase_annotations", "tool_annotations"):
        (root / folder).mkdir(parents=True)
        for source in (cholec80 / folder).glob("video01*"):
            (root / folder / source.name).write_bytes(source.read_bytes())
    phase_file = root / "phase_annotations" / "video01-phase.txt"
    phase_file.write_text(phase_file.read_text().replace("Preparation", "Preperation", 1))
    dm = Cholec80DataModule(str(root), splits={"train": "1", "val": "1", "test": "1"},
                            cache_dir=None, image_size=32)  # fmt: skip
    with pytest.raises(
        VideoDataError, match="video01-phase.txt, line 2: unknown phase 'Preperation'"
    ):
        dm.setup()


def test_missing_cholec80_folder_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="No Cholec80 videos at data.root"):
        Cholec80DataModule(str(tmp_path)).setup()


def test_video_folder_with_label_csvs(tmp_path, video):
    for split in ("train", "val", "test"):
        write_mp4(tmp_path / split / "case.mp4", video.frames, video.fps)
        with (tmp_path / split / "case.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["frame", "phase", "hook"])
            for i, p in enumerate(video.phases):
                writer.writerow([i, PHASES[p], int(video.tools[i, TOOLS.index("Hook")])])
    dm = VideoFolderDataModule(str(tmp_path), clip_frames=4, image_size=32, cache_dir=None)
    dm.setup()
    assert dm.phase_names == sorted(PHASES) and dm.tool_names == ["hook"]
    record = dm.videos["val"][0]
    names = [dm.phase_names[p] for p in record.phases]
    assert names == [PHASES[p] for p in video.phases[::5]]


def test_synthetic_datamodule_writes_cholec80_once(tmp_path):
    kwargs = dict(videos={"train": 1, "val": 1, "test": 1}, seconds=(14, 14), clip_frames=4,
                  image_size=32, cache_dir=str(tmp_path))  # fmt: skip
    dm = SyntheticSurgeryDataModule(**kwargs)
    dm.setup()
    assert sorted(p.name for p in (dm.root / "videos").iterdir()) == [
        "video01.mp4", "video02.mp4", "video03.mp4"
    ]  # fmt: skip
    stamp = (dm.root / "videos" / "video01.mp4").stat().st_mtime_ns
    SyntheticSurgeryDataModule(**kwargs).setup()
    assert (dm.root / "videos" / "video01.mp4").stat().st_mtime_ns == stamp


def test_parse_numbers():
    assert parse_numbers("1-3,7") == [1, 2, 3, 7] and parse_numbers(5) == [5]
    with pytest.raises(ValueError, match="video numbers"):
        parse_numbers("one to three")


def test_synthetic_data_never_deletes_a_users_folder(tmp_path):
    (tmp_path / "my_videos").mkdir()
    own = tmp_path / "my_videos" / "case.mp4"
    own.write_bytes(b"a user's file")
    dm = SyntheticSurgeryDataModule(root=str(tmp_path / "my_videos"), videos={"train": 1})
    with pytest.raises(DataError, match="my_videos.*no synthetic set"):
        dm.prepare_data()
    assert own.read_bytes() == b"a user's file"
