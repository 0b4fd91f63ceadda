"""The project's own timm contract, for every model the zoo registers.

timm's full suite runs with ../shared/tools/timm_contract/run.sh; these checks are the part the
tasks rely on, kept here so the project needs nothing outside itself.
"""

import pkgutil

import pytest
import timm
import torch
from timm.models import _registry

import zoo
from zoo.backbones.metaformer_1d import is_sequence_model
from zoo.backbones.restoration_nets import is_restoration_net

ZOO_MODULES = {m.name for m in pkgutil.iter_modules(zoo.backbones.__path__)}
# image -> image restoration networks (DnCNN, CFSR ...) are no classifiers: their contract is
# tests/zoo/test_restoration_nets.py::test_restoration_contract; the 1D sequence models take
# (B, C, L): theirs is tests/zoo/test_sequence_mixers.py
ZOO_MODELS = sorted(
    n
    for n in timm.list_models()
    if _registry._model_to_module.get(n) in ZOO_MODULES
    and not is_restoration_net(n)
    and not is_sequence_model(n)
)


def _input_size(name: str) -> tuple[int, int]:
    """A small input with the aspect of the model's default (re-ID nets are 2:1)."""
    _, h, w = timm.get_pretrained_cfg(name).input_size
    return (64, 64 * w // h) if h >= w else (64 * h // w, 64)


def test_the_zoo_registers_models():
    assert "hornet_tiny_7x7" in ZOO_MODELS


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_builds_on_meta_device_and_rejects_unknown_kwargs(name):
    model = timm.create_model(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.in_chans == 3
    with pytest.raises(TypeError):
        timm.create_model(name, device="meta", not_an_argument=1)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_classifier_interface(name):
    torch.manual_seed(0)
    model = timm.create_model(name, in_chans=1, num_classes=7).eval()
    x = torch.randn(2, 1, *_input_size(name))
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert pre_logits.shape == (2, model.head_hidden_size)
    # NCHW maps, or (B, tokens, C) for class-token models such as CvT (timm's "non-standard")
    assert features.shape[1 if features.ndim == 4 else -1] == model.num_features
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    if hasattr(model, "group_matcher"):  # optional in timm (its MetaFormer has none)
        assert len(model.group_matcher()) > 1


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_features_only_matches_feature_info(name):
    model = timm.create_model(name, features_only=True, in_chans=3).eval()
    size = _input_size(name)
    with torch.no_grad():
        maps = model(torch.randn(1, 3, *size))
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    for feature_map, reduction in zip(maps, model.feature_info.reduction()):
        assert feature_map.shape[-2] == -(-size[0] // reduction)  # ceil: padding convs round up


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_forward_intermediates_can_stop_early(name):
    # a dense-task neck that takes the early stages only stops the forward there
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = torch.randn(1, 3, *_input_size(name))
    with torch.no_grad():
        _, full = model.forward_intermediates(x, indices=[1])
        _, early = model.forward_intermediates(x, indices=[1], stop_early=True)
    assert len(full) == len(early) == 1
    torch.testing.assert_close(early[0], full[0])
