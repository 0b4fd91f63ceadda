"""Shared fixtures: compose train.yaml the way `python train.py ...` would, into a temp dir."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--every-backbone",
        action="store_true",
        help="export every zoo classifier in tests/tasks/test_export_backbones.py, not one per family",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Share the cores between pytest-xdist's workers (`make test` runs two): each would start
    one torch thread per core, and two workers x two threads on two cores thrash."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `python train.py <overrides>` would run, writing into `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """`make_cfg("backbone=hornet", ...)`: a composed config writing under tmp_path."""

    def make(*overrides: str, logger: str = "none") -> DictConfig:
        return compose_train([f"logger={logger}", *overrides], tmp_path)

    yield make
    GlobalHydra.instance().clear()
