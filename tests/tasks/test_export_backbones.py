"""ONNX export of every classifier backbone the zoo registers, at a tiny input size.

A backbone either exports (torch.export, then ONNX) and matches the eager model in ONNX Runtime,
or the failure names the operator that stopped it and the test is marked xfail with that
operator: `pytest -rx` lists them. docs/export.md has the last run's table.
"""

import pytest
import timm
import torch

from tasks.export import export_network
from tests.zoo.test_contract import ZOO_MODELS, _input_size


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_MODELS)
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
