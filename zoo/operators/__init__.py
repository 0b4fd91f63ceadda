"""Operators of the zoo: one family per module, plain `nn.Module`s.

Every module in this package is imported here so that its token mixers register themselves.
"""

import importlib
import pkgutil

from .registry import create_token_mixer, list_token_mixers, register_token_mixer

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["create_token_mixer", "list_token_mixers", "register_token_mixer"]
