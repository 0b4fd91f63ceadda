"""ONNX export of every classifier backbone the zoo registers, at a tiny input size.

`make test` tries the first model of each zoo family (one per module: every operator at a cost
the suite affords); `pytest tests/tasks/test_export_backbones.py --every-backbone` tries all of
them (about 20 s each on 2 CPU cores). A backbone either exports (torch.export, then ONNX) and matches the eager model in ONNX Runtime,
or the failure names the operator that stopped it and the test is marked xfail with that
operator: `pytest -rx` lists them. docs/export.md has the last run's table.
"""

import pytest
import timm
import torch
from timm.models import _registry

from tasks.export import export_network
from tests.zoo.test_contract import ZOO_MODELS, _input_size


def one_per_family(names: list[str]) -> list[str]:
    """The first model (by name) of each zoo module."""
    first: dict[str, str] = {}
    for name in sorted(names):
        first.setdefault(_registry._model_to_module[name], name)
    return sorted(first.values())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "name" in metafunc.fixturenames:
        every = metafunc.config.getoption("--every-backbone")
        metafunc.parametrize("name", ZOO_MODELS if every else one_per_family(ZOO_MODELS))


@pytest.mark.slow
def test_classifier_backbone_exports_to_onnx(name, tmp_path):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5).eval()
    inputs = (torch.randn(2, 3, *_input_size(name)),)
    record = export_network(model, inputs, tmp_path, ["image"], ["logits"])
    for kind in ("torch_export", "onnx"):
        if "error" in record[kind]:
            assert record[kind]["operator"], f"{kind} failed naming no operator: {record[kind]}"
            pytest.xfail(f"{kind} stopped at {record[kind]['operator']}: {record[kind]['error']}")
    parity = record["onnx"]["parity"]
    assert parity["passed"], parity
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.pt2").is_file()
