"""pytest plugin for tools/timm_suite.py: timm's tests/test_models.py on the zoo's models only.

timm's test module parametrizes its tests at import time with `timm.list_models(...)`, which it
imports by name, and has no hook for choosing models. Loaded with `-p` before that import, this
plugin:

1. imports `zoo`, so that its models register in timm;
2. narrows `timm.list_models` / `list_pretrained` to the zoo's models matching `--zoo-models`
   (timm's own models never run, and collection stays fast);
3. adds the zoo's modules to the `module=[...]` allow-lists: timm's FEAT_INTER_FILTERS gate the
   forward_intermediates and pruning tests by module name;
4. runs CvT as timm runs its ViTs (NON_STD_FILTERS): its forward_features returns tokens;
5. deselects every test that is not about a selected model (timm's hard-coded model tests).
"""

import fnmatch
import importlib

import pytest
import timm
from timm.models import _registry

#: The zoo's models whose forward_features returns tokens, not an NCHW map (timm's ViT rule).
NON_STD_MODELS = ["cvt_*"]

_registered_before = set(_registry._model_entrypoints)
importlib.import_module("zoo")
ZOO_MODELS = set(_registry._model_entrypoints) - _registered_before
ZOO_MODULES = sorted({_registry._model_to_module[name] for name in ZOO_MODELS})

_patterns: list[str] = []


def selected(name: str) -> bool:
    """A zoo model matching one of the patterns (by full name or without its `.tag`)."""
    arch = name.split(".", 1)[0]
    return arch in ZOO_MODELS and any(
        fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(arch, p) for p in _patterns
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--zoo-models", required=True, help="comma-separated fnmatch patterns")


def pytest_configure(config: pytest.Config) -> None:
    _patterns[:] = [p.strip() for p in config.getoption("--zoo-models").split(",") if p.strip()]
    list_models, list_pretrained = timm.list_models, timm.list_pretrained

    def with_zoo_rules(filters):
        # test_models.py passes NON_STD_FILTERS, or lists built from it: they hold 'vit_*'
        if isinstance(filters, list | tuple) and "vit_*" in filters:
            return [*filters, *NON_STD_MODELS]
        return filters

    def list_zoo_models(filter="", module="", pretrained=False, exclude_filters="", **kwargs):
        if module and not isinstance(module, str):
            module = [*module, *ZOO_MODULES]
        names = list_models(with_zoo_rules(filter), module, pretrained,
                            with_zoo_rules(exclude_filters), **kwargs)  # fmt: skip
        return [name for name in names if selected(name)]

    def list_zoo_pretrained(filter="", exclude_filters=""):
        return [name for name in list_pretrained(filter, exclude_filters) if selected(name)]

    for namespace in (timm, timm.models):
        namespace.list_models, namespace.list_pretrained = list_zoo_models, list_zoo_pretrained


def pytest_report_header(config: pytest.Config) -> list[str]:
    chosen = sorted(name for name in ZOO_MODELS if selected(name))
    return [f"timm {timm.__version__}; zoo models {_patterns}: {len(chosen)} ({', '.join(chosen)})"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        name = getattr(getattr(item, "callspec", None), "params", {}).get("model_name")
        (keep if isinstance(name, str) and selected(name) else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
