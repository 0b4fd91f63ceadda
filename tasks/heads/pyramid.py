"""Any timm backbone as a feature pyramid: `features_only=True`, its channels and reductions."""

from collections.abc import Callable, Sequence

import torch
from torch import nn


class IncompatibleBackboneError(ValueError):
    """A backbone that a task cannot use, refused before training with the reason."""


def distinct_levels(reductions: Sequence[int], min_reduction: int = 1) -> list[int]:
    """Indices of the levels a pyramid keeps: per distinct reduction, the deepest level.

    Hierarchical backbones give one level per stride; isotropic ones (ConViT) give several at
    the same stride, of which the deepest carries the most. Levels finer than `min_reduction`
    are dropped (they cost the most and help the least); if that drops every level, the
    deepest one is kept.
    """
    deepest = {r: i for i, r in enumerate(reductions)}  # later indices overwrite earlier
    levels = sorted(i for r, i in deepest.items() if r >= min_reduction)
    return levels or [len(reductions) - 1]


class FeaturePyramidBackbone(nn.Module):
    """A `features_only` timm model that returns the kept levels, finest first.

    Attributes:
        channels: Channels of each kept level.
        reductions: Stride of each kept level relative to the input.
    """

    def __init__(self, body: nn.Module, levels: Sequence[int]):
        super().__init__()
        self.body, self.levels = body, list(levels)
        info = body.feature_info
        self.channels = [info.channels()[i] for i in self.levels]
        self.reductions = [info.reduction()[i] for i in self.levels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(x)
        return [features[i] for i in self.levels]


def feature_pyramid(
    create_backbone: Callable[..., nn.Module], name: str, task: str, min_reduction: int = 1
) -> FeaturePyramidBackbone:
    """Build `name` with `features_only=True` through the task's `create_backbone`.

    Raises:
        IncompatibleBackboneError: timm cannot build the backbone as a feature extractor.
    """
    try:
        body = create_backbone(features_only=True)
    except Exception as error:  # noqa: BLE001  (whatever timm raises, the user needs the reason)
        raise IncompatibleBackboneError(
            f"backbone {name!r} cannot serve task={task}: it needs a feature pyramid, and timm "
            f"cannot build this model with features_only=True ({type(error).__name__}: {error}). "
            "Choose a backbone with feature_info, e.g. backbone=inceptionnext."
        ) from error
    reductions = body.feature_info.reduction()
    return FeaturePyramidBackbone(body, distinct_levels(reductions, min_reduction))
