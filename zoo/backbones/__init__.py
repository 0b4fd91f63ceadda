"""Backbones of the zoo: one family per module, each registering its variants in timm.

Every module in this package is imported here, so `import zoo` is all a user needs before
`timm.create_model('hornet_tiny_7x7')`. The operator grid is imported last because it builds one
model per token mixer registered by the operator modules.
"""

import importlib
import pkgutil

_LAST = "metaformer_grid"

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name == _LAST):
    importlib.import_module(f"{__name__}.{_module.name}")
