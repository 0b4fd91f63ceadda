"""convzoo's operators and backbones. Importing this package registers every backbone in timm.

import timm, zoo
model = timm.create_model("hornet_tiny_7x7", num_classes=10)
"""

from . import backbones, operators  # noqa: F401  (importing registers models and mixers)
