"""Files and disks: an unwritable or full log dir, a missing data root and a read-only cache are
clear errors before anything is built (tasks/preflight.py).

Tests run as root here, and root writes through any permission bit: a read-only folder is made
unwritable the way every user is refused (a file standing where the folder should be), or its
error is raised where the operating system would raise it (monkeypatch). The two subprocess
tests run `python train.py` as a user does.
"""

import errno
import os
import subprocess
import sys
import tempfile
from collections import namedtuple
from pathlib import Path

import pytest

import train
from tasks.preflight import StorageError, check_writable

ROOT = Path(__file__).resolve().parents[2]


def blocked(tmp_path: Path) -> Path:
    """A folder path that no user can create: a regular file stands where its parent should be."""
    (tmp_path / "occupied").write_text("a file, not a folder")
    return tmp_path / "occupied" / "logs"


def fail_writes(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Every new file fails as the OS fails it with `code` (EROFS: read-only, ENOSPC: full)."""

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)


def test_folder_under_a_file_is_named(tmp_path):
    folder = blocked(tmp_path)
    with pytest.raises(
        StorageError, match=f"logs={str(folder)!r} cannot be written: a file stands"
    ):
        check_writable(folder, "logs")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_named(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="permission denied"):
            check_writable(tmp_path / "logs", "logs")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EROFS, "the file system is read-only"), (errno.ENOSPC, "the disk is full")],
)
def test_unwritable_output_dir_stops_the_run_before_anything_is_built(
    make_cfg, tmp_path, monkeypatch, code, reason
):
    cfg = make_cfg("debug=fdr")
    built = []
    monkeypatch.setattr(train, "build", lambda *a, **k: built.append(a))
    fail_writes(monkeypatch, code)
    with pytest.raises(
        StorageError, match=f"paths.output_dir='{tmp_path}' cannot be written: {reason}"
    ):
        train.run(cfg)
    assert not built


def test_nearly_full_disk_stops_the_run(make_cfg, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(StorageError, match=r"1 MiB free on its disk, .* paths.min_free_mb=256"):
        train.run(make_cfg("debug=fdr"))


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=cholec80", "data.root={missing}", "task=surgical_video"],
        ["data=market1501", "data.root={missing}", "task=reid"],
        ["data=bars", "data.path={missing}/*.csv", "task=volatility"],
        ["data=hr_folder", "data.root={missing}", "task=super_resolution"],
    ],
)
def test_missing_data_is_named_before_anything_is_built(make_cfg, tmp_path, monkeypatch, overrides):
    missing = tmp_path / "nowhere"
    built = []
    monkeypatch.setattr(train, "build", lambda *a, **k: built.append(a))
    cfg = make_cfg("debug=fdr", *(o.format(missing=missing) for o in overrides))
    with pytest.raises(FileNotFoundError, match=str(missing)):
        train.run(cfg)
    assert not built


def test_read_only_cache_is_named_before_anything_is_built(make_cfg, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    cfg = make_cfg("task=surgical_video", "debug=fdr", f"data.cache_dir={cache}")
    built = []
    monkeypatch.setattr(train, "build", lambda *a, **k: built.append(a))
    real = tempfile.NamedTemporaryFile

    def read_only_cache(*args, **kwargs):
        if Path(kwargs["dir"]) == cache:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(cache))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only_cache)
    with pytest.raises(StorageError, match=f"data.cache_dir='{cache}' cannot be written: the file"):
        train.run(cfg)
    assert not built


def train_py(*overrides: str, log_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVZOO_LOG_DIR": str(log_dir)}
    return subprocess.run([sys.executable, "train.py", "debug=fdr", *overrides], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_train_py_refuses_an_unwritable_log_dir(tmp_path):
    log_dir = blocked(tmp_path)
    done = train_py(log_dir=log_dir)
    assert done.returncode == 1
    assert f"hydra.run.dir='{log_dir}/classification/runs/" in done.stderr
    assert "a file stands where a folder should be" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.slow
def test_train_py_refuses_a_disk_without_the_stated_free_space(tmp_path):
    done = train_py("paths.min_free_mb=1000000000", log_dir=tmp_path)  # a petabyte
    assert done.returncode == 1
    assert f"hydra.run.dir='{tmp_path}/classification/runs/" in done.stderr
    assert "the run needs at least paths.min_free_mb=1000000000 MiB" in done.stderr
    assert not any(tmp_path.iterdir())  # no run folder was made
