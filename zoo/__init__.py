"""convzoo's operators and backbones. Importing this package registers every backbone in timm.

    import timm, zoo
    model = timm.create_model("hornet_tiny_7x7", num_classes=10)
"""

from . import operators  # noqa: F401  (registers token mixers before the grid is built)
from . import backbones  # noqa: F401  (registers models in timm)
