"""Necks, decoders and heads shared by the dense tasks, over any backbone's feature pyramid."""

from .decoders import FPNDecoder, UPerNetDecoder
from .pyramid import (
    FeaturePyramidBackbone,
    IncompatibleBackboneError,
    distinct_levels,
    feature_pyramid,
)

__all__ = [
    "FPNDecoder",
    "FeaturePyramidBackbone",
    "IncompatibleBackboneError",
    "UPerNetDecoder",
    "distinct_levels",
    "feature_pyramid",
]
