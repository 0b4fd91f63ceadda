"""ONNX export of every classifier backbone the zoo registers, at a tiny input size.

`make test` tries one model of each zoo family (every operator, at a cost the suite affords:
the family's smallest graph, which exports fastest); `pytest tests/tasks/test_export_backbones.py
--every-backbone` tries all of them (20-110 s each on 2 CPU cores). A backbone either exports (torch.export, then ONNX) and matches the eager model in ONNX Runtime,
or the failure names the operator that stopped it and the test is marked xfail with that
operator: `pytest -rx` lists them. docs/export.md has the last run's table.
"""

import pytest
import timm
import torch
from timm.models import _registry

from tasks.export import export_network
from tests.zoo.test_contract import ZOO_MODELS, _input_size

#: Each zoo family's model with the fewest modules (counted on the meta device), the fastest to
#: export; test_every_family_has_one_export_representative keeps it complete.
ONE_PER_FAMILY = (
    "affnet_et", "cas_vit_xs", "convnext_tiny_dcls", "cvt_13", "favit_b0", "ffnet_1",
    "glnet_stl", "hornet_tiny_7x7", "identityformer_s12", "metaformer_s12_identity",
    "tiny_moat_0", "mobilenetv2_tvconv_010", "ninformer", "osnet_x0_25", "raftmlp_s",
    "resnet50_fadc", "test_squeezetime", "sret_t", "svt_h_s", "tic_tiny", "transnext_micro",
    "uniformer_small", "unireplknet_a", "weighted_resnet18",
)  # fmt: skip


def family(name: str) -> str:
    return _registry._model_to_module[name]


def test_every_family_has_one_export_representative():
    assert sorted(family(n) for n in ONE_PER_FAMILY) == sorted({family(n) for n in ZOO_MODELS})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "name" in metafunc.fixturenames:
        every = metafunc.config.getoption("--every-backbone")
        metafunc.parametrize("name", ZOO_MODELS if every else ONE_PER_FAMILY)


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
