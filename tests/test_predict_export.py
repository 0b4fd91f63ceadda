"""mode=predict and mode=export, from checkpoints of a very short real run of each task.

Classification runs `python train.py ...` in subprocesses, as the README writes it, with logs
moved by CONVZOO_LOG_DIR; the other tasks go through `train.run` with the same overrides. Each
task trains once per session (module-scoped fixtures).
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from skimage import data as photos
from sklearn.datasets import load_digits

import train
from data.synth.surgical_video import write_mp4
from tasks.predict import RECORD_KEY, load_task
from tests.conftest import ROOT, compose_train

SHORT_RUN = ["debug=limit", "trainer.max_epochs=1", "logger=csv"]
# the tests of the digits checkpoint share one worker, so that it is trained once, not per worker
DIGITS = pytest.mark.xdist_group("digits_checkpoint")


def run_train(log_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVZOO_LOG_DIR": str(log_dir)}
    return subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip


def newest_run(log_dir: Path) -> Path:
    return max((p for p in log_dir.glob("*/runs/*") if p.is_dir()), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("logs")
    done = run_train(log_dir, *SHORT_RUN)
    assert done.returncode == 0, done.stderr[-3000:]
    return newest_run(log_dir) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> Path:
    """Digits as a user has them: PNGs in a folder and a sub-folder, one an RGB JPEG."""
    folder = tmp_path_factory.mktemp("digits")
    (folder / "more").mkdir()
    digits = load_digits()
    for i in range(12):
        image = Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8))
        image.save(folder / f"{i}.png")
    Image.fromarray((digits.images[20] * 255 / 16).astype(np.uint8)).convert("RGB").save(
        folder / "more" / "rgb.jpg", quality=95
    )
    return folder


@DIGITS
def test_classification_predictions_csv_matches_the_test_transform(
    digits_checkpoint, digit_files, tmp_path
):
    done = run_train(tmp_path, "mode=predict", f"ckpt_path={digits_checkpoint}",
                     f"input={digit_files}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((newest_run(tmp_path) / "predictions.csv").open()))
    assert sorted(r["file"] for r in rows) == sorted(
        [f"{i}.png" for i in range(12)] + ["more/rgb.jpg"]
    )
    # the same images through the training datamodule's own test-time pipeline
    task, record = load_task(digits_checkpoint)
    from data.classification import DigitsDataModule

    datamodule = DigitsDataModule(image_size=record["data"]["image_size"],
                                  mean=record["data"]["mean"], std=record["data"]["std"])  # fmt: skip
    transform = datamodule.transform(train=False)
    for row in rows:
        image = np.asarray(Image.open(digit_files / row["file"]).convert("L"))[..., None]
        with torch.no_grad():
            probabilities = task(transform(image=image)["image"][None]).softmax(1)[0]
        assert row["class"] == task.hparams.class_names[int(probabilities.argmax())]
        assert float(row["probability"]) == pytest.approx(float(probabilities.max()), abs=1e-4)


@DIGITS
def test_a_glob_selects_files(digits_checkpoint, digit_files, tmp_path):
    done = run_train(tmp_path, "mode=predict", f"ckpt_path={digits_checkpoint}",
                     f"input={digit_files}/1*.png")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((newest_run(tmp_path) / "predictions.csv").open()))
    assert sorted(r["file"] for r in rows) == ["1.png", "10.png", "11.png"]


@DIGITS
def test_a_bad_input_file_is_named(digits_checkpoint, digit_files, tmp_path):
    bad = tmp_path / "inputs"
    bad.mkdir()
    (bad / "ok.png").write_bytes((digit_files / "0.png").read_bytes())
    (bad / "broken.png").write_bytes(b"not an image")
    done = run_train(tmp_path, "mode=predict", f"ckpt_path={digits_checkpoint}", f"input={bad}")
    assert done.returncode != 0
    assert "broken.png" in done.stderr and "cannot be read" in done.stderr


@DIGITS
def test_classification_export_passes_parity_and_onnx_agrees(
    digits_checkpoint, digit_files, tmp_path
):
    done = run_train(tmp_path, "mode=export", f"ckpt_path={digits_checkpoint}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parity passed" in done.stdout
    run = newest_run(tmp_path)
    record = json.loads((run / "model.json").read_text())
    parity = record["onnx"]["parity"]
    assert parity["max_abs_difference"] <= 1e-4 * parity["max_abs_output"]
    assert record["class_names"] == [str(d) for d in range(10)]
    assert record["preprocessing"]["in_chans"] == 1 and len(record["preprocessing"]["mean"]) == 1
    assert (run / "model.pt2").is_file()
    program = torch.export.load(run / "model.pt2")
    # the ONNX file, fed as model.json says, gives what the checkpoint gives
    task, _ = load_task(digits_checkpoint)
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    x = torch.randn(record["inputs"]["image"]["shape"])
    (onnx_logits,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        eager = task(x)
    torch.testing.assert_close(torch.from_numpy(onnx_logits), eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(program.module()(x), eager, atol=1e-4, rtol=1e-4)


@DIGITS
def test_a_checkpoint_without_inference_record_is_refused(digits_checkpoint, tmp_path):
    checkpoint = torch.load(digits_checkpoint, weights_only=True)
    del checkpoint[RECORD_KEY]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    done = run_train(tmp_path, "mode=export", f"ckpt_path={old}")
    assert done.returncode != 0 and "no inference record" in done.stderr


# ---- the other tasks, through train.run ------------------------------------------------------

RUNS = {
    "segmentation": ["task=segmentation", "data.train_size=16", "data.val_size=4",
                     "data.test_size=4", "data.batch_size=4"],
    # an untrained detector scores below the default 0.05: keep every box
    "detection": ["task=detection", "task.score_thresh=0.0", "data.train_size=16",
                  "data.val_size=4", "data.test_size=4", "data.batch_size=4"],
    "super_resolution": ["task=super_resolution", "backbone=espcn", "data.samples_per_epoch=16"],
    "denoising": ["task=denoising", "backbone=dncnn", "data.samples_per_epoch=16"],
    "reid": ["task=reid", "backbone=osnet", "data.train_ids=24", "data.test_ids=8",
             "data.distractors=4", "data.val_ids=4", "data.ids_per_batch=4"],
    "surgical_video": ["task=surgical_video"],
}  # fmt: skip


def write_bars(path: Path, days: int, seed: int) -> Path:
    """5-minute bars of a random walk with volatility clustering, `days` days."""
    rng = np.random.default_rng(seed)
    steps = days * 288
    volatility = 0.001 * np.exp(np.cumsum(rng.normal(0, 0.05, steps)).clip(-2, 2))
    close = 100 * np.exp(np.cumsum(volatility * rng.standard_normal(steps)))
    times = 1_600_000_000 + 300 * np.arange(steps)
    rows = "\n".join(f"{t},{c:.5f}" for t, c in zip(times, close))
    path.write_text("timestamp,close\n" + rows + "\n")
    return path


def photo_inputs(folder: Path, channels: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photos.astronaut()[::8, ::6]).save(folder / "astronaut.png")  # 64 x 86
    Image.fromarray(photos.coffee()[::9, ::9]).save(folder / "coffee.jpg")
    return folder


@pytest.fixture(scope="module")
def task_run(tmp_path_factory):
    """`task_run(name)`: a checkpoint of a very short run of that task (made once)."""
    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(name)
            overrides = RUNS.get(name)
            if name == "volatility":
                bars = write_bars(out / "bars.csv", days=120, seed=0)
                overrides = ["task=volatility", "data=bars", f"data.path={bars}"]
            train.run(compose_train([*overrides, *SHORT_RUN], out))
            made[name] = out / "checkpoints" / "last.ckpt"
        return made[name]

    return make


def predict_with(ckpt: Path, inputs: Path, out: Path) -> dict:
    return train.run(compose_train(["mode=predict", f"ckpt_path={ckpt}", f"input={inputs}"], out))


@pytest.mark.slow
def test_segmentation_masks_have_the_input_size(task_run, tmp_path):
    inputs = photo_inputs(tmp_path / "in")
    predict_with(task_run("segmentation"), inputs, tmp_path / "out")
    for name in ("astronaut", "coffee"):
        source = Image.open(next(inputs.glob(f"{name}.*")))
        mask = Image.open(tmp_path / "out" / "masks" / f"{name}.png")
        assert mask.mode == "P" and mask.size == source.size
        assert np.asarray(mask).max() < 4  # the four classes of the instruments data
        assert Image.open(tmp_path / "out" / "overlays" / f"{name}.png").size == source.size
    legend = list(csv.DictReader((tmp_path / "out" / "classes.csv").open()))
    assert [r["class"] for r in legend] == ["background", "shaft", "wrist", "jaws"]


@pytest.mark.slow
def test_detection_writes_coco_results_inside_the_image(task_run, tmp_path):
    inputs = photo_inputs(tmp_path / "in")
    predict_with(task_run("detection"), inputs, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    sizes = {p.name: Image.open(p).size for p in inputs.iterdir()}
    assert results, "an untrained detector still scores boxes above 0.05"
    for r in results:
        x, y, w, h = r["bbox"]
        width, height = sizes[r["file_name"]]
        assert 0 <= x and 0 <= y and x + w <= width + 0.5 and y + h <= height + 0.5
        assert r["image_id"] == sorted(sizes).index(r["file_name"])
        assert 0 <= r["category_id"] < 4 and 0 < r["score"] <= 1
    assert (tmp_path / "out" / "boxes" / "coffee.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("task,scale", [("super_resolution", 3), ("denoising", 1)])
def test_restoration_writes_restored_images(task_run, tmp_path, task, scale):
    inputs = photo_inputs(tmp_path / "in")
    predict_with(task_run(task), inputs, tmp_path / "out")
    for path in inputs.iterdir():
        width, height = Image.open(path).size
        restored = Image.open(tmp_path / "out" / "restored" / f"{path.stem}.png")
        assert restored.size == (scale * width, scale * height)


@pytest.mark.slow
def test_reid_ranks_the_gallery_for_each_query(task_run, tmp_path):
    inputs = tmp_path / "in"
    for folder, count in (("query", 2), ("gallery", 5)):
        (inputs / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(photos.astronaut()[i * 20 : i * 20 + 256, 100:228]).save(
                inputs / folder / f"{i}.png"
            )
    predict_with(task_run("reid"), inputs, tmp_path / "out")
    embeddings = list(csv.reader((tmp_path / "out" / "embeddings.csv").open()))
    assert len(embeddings) == 1 + 7
    matches = list(csv.DictReader((tmp_path / "out" / "matches.csv").open()))
    assert len(matches) == 2 * 5
    for query in ("query/0.png", "query/1.png"):
        distances = [float(m["distance"]) for m in matches if m["query"] == query]
        assert distances == sorted(distances)
    # the query image that is also in the gallery finds itself first
    first = next(m for m in matches if m["query"] == "query/0.png")
    assert first["gallery"] == "gallery/0.png" and float(first["distance"]) < 1e-5


@pytest.mark.slow
def test_volatility_predicts_each_interval_of_a_series(task_run, tmp_path):
    ckpt = task_run("volatility")
    series = write_bars(tmp_path / "other.csv", days=60, seed=1)
    predict_with(ckpt, series, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "other-volatility.csv").open()))
    assert 30 <= len(rows) <= 60
    assert all(float(r["predicted_next_volatility"]) > 0 for r in rows)
    assert rows[-1]["realised_next_volatility"] == ""  # the day after the file: a forecast


@pytest.mark.slow
def test_surgical_video_writes_phases_per_frame(task_run, tmp_path):
    ckpt = task_run("surgical_video")
    frames = np.random.default_rng(0).integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)
    write_mp4(tmp_path / "operation.mp4", frames, fps=5)  # 10 s, sampled at 1 frame/s
    predict_with(ckpt, tmp_path / "operation.mp4", tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "operation-phases.csv").open()))
    task, _ = load_task(ckpt)
    assert [int(r["frame"]) for r in rows] == list(range(0, 50, 5))
    assert {r["phase"] for r in rows} <= set(task.class_names)
    assert (tmp_path / "out" / "operation-phases.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("task", [*RUNS, "volatility"])
def test_export_passes_parity(task_run, tmp_path, task):
    result = train.run(compose_train(["mode=export", f"ckpt_path={task_run(task)}"], tmp_path))
    parity = result["onnx"]["parity"]
    assert parity["max_abs_difference"] <= 1e-4 * parity["max_abs_output"]
    assert json.loads((tmp_path / "model.json").read_text())["outputs"] == result["outputs"]


def test_predict_without_input_and_an_unknown_mode_are_refused(make_cfg, tmp_path):
    ckpt = tmp_path / "any.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(train.ConfigError, match="mode=predict needs input="):
        train.run(make_cfg("mode=predict", f"ckpt_path={ckpt}"))
    with pytest.raises(train.ConfigError, match="mode=export uses a checkpoint"):
        train.run(make_cfg("mode=export"))
    with pytest.raises(train.ConfigError, match="predict, export"):
        train.run(make_cfg("mode=serve"))
