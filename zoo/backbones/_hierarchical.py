"""The timm plumbing shared by the zoo's ConvNeXt-shaped backbones: stem -> stages -> head.

HorNet, UniRepLKNet, TiC, MOAT, SReT and SVT differ in their blocks only. Each builds
`self.stem`, `self.stages` (an `nn.Sequential` of stages that have `blocks`, `grad_checkpointing`
and, where a stage starts by downsampling, `downsample`), `self.head` (timm's
`NormMlpClassifierHead`, or a head with its `fc` and `reset`), `self.feature_info` and
`self.num_features`; `HierarchicalNet` gives them timm's classifier and feature-extraction
interface once. A model whose input embedding is more than its stem (SReT adds a position
embedding) overrides `embed`.

UniFormer, GLNet, FFNet, RaftMLP, FaViT, TransNeXt and CAS-ViT end instead in a final norm
(`self.norm`) and timm's `ClassifierHead`, and subclass `NormHeadNet`. RaftMLP and FaViT have no
stem (their first stage embeds the patches) and override `embed`; FaViT and TransNeXt end every
stage in its own norm and set `self.norm = nn.Identity()`; CAS-ViT's two linear heads override
the classifier methods.

AFFNet and the TVConv MobileNetV2 end in a widening 1x1 conv (`self.conv_head`) and timm's
`ClassifierHead`, and subclass `ConvHeadNet`.
"""

import torch
from timm.layers import get_device_dtype
from timm.models._features import feature_take_indices
from torch import nn

__all__ = ["ConvHeadNet", "HierarchicalNet", "NormHeadNet", "stage_group_matcher"]


def stage_group_matcher(coarse: bool, stem: str = r"^stem", tail: str | None = None) -> dict:
    """timm's parameter groups of `stem -> stages`: coarse by stage, fine by block.

    `tail` matches what follows the last block (a final norm), grouped after everything else.
    """
    if coarse:
        return dict(stem=stem, blocks=r"^stages\.(\d+)")
    blocks = [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)]
    if tail is not None:
        blocks.append((tail, (99999,)))
    return dict(stem=stem, blocks=blocks)


class HierarchicalNet(nn.Module):
    """timm's model interface over `stem`, `stages` and a `NormMlpClassifierHead` `head`.

    (The attributes are not declared as class annotations: TorchScript rejects them.)
    """

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return stage_group_matcher(coarse)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, reset_other: bool = False
    ) -> None:
        self.num_classes = num_classes
        self.head.reset(
            num_classes,
            global_pool,
            reset_other=reset_other,
            in_features=self.num_features,
            **get_device_dtype(self),
        )
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the outputs of the stages in `indices` (NCHW).

        `norm` passes the last stage's output through `final_norm` when it is taken.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = (
            self.stages
            if torch.jit.is_scripting() or not stop_early
            else self.stages[: max_index + 1]
        )
        last = len(self.stages) - 1
        intermediates = []
        x = self.embed(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(self.final_norm(x) if norm and i == last else x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self.pre_head(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last index kept, the tail and the head as asked."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        prune_end = max_index < len(self.feature_info) - 1
        self._prune_tail(prune_norm, prune_end)
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self._drop_head()
        return take_indices

    def _prune_tail(self, prune_norm: bool, prune_end: bool) -> None:
        """Drop what sits between the last stage and the head (none here) as pruning asks."""

    def _drop_head(self) -> None:
        """Leave the head's pooling and classifier out: features only."""
        self.reset_classifier(0, "", reset_other=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> the first stage's input."""
        return self.stem(x)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The norm after the last stage, outside the head: none here (the head norms)."""
        return x

    def pre_head(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output -> `forward_features`' output, the head's input."""
        return self.final_norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_head(self.stages(self.embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _ClassifierHeadNet(HierarchicalNet):
    """`HierarchicalNet` with timm's `ClassifierHead` `head`, which has no hidden layer (so
    `head_hidden_size` is `num_features`) and nothing else to reset."""

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(
            num_classes, global_pool, in_features=self.num_features, **get_device_dtype(self)
        )

    def _drop_head(self) -> None:
        self.reset_classifier(0, "")


class NormHeadNet(_ClassifierHeadNet):
    """A final `norm` (its `final_norm`) after the last stage, and a `ClassifierHead` `head`.

    The norm is sized for the last stage, so it applies to that stage's output only and is
    dropped with any stage pruned away.
    """

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return stage_group_matcher(coarse, tail=r"^norm")

    def _prune_tail(self, prune_norm: bool, prune_end: bool) -> None:
        if prune_norm or prune_end:
            self.norm = nn.Identity()

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ConvHeadNet(_ClassifierHeadNet):
    """A widening 1x1 `conv_head` after the last stage, and a `ClassifierHead` `head`.

    The conv changes the channel count, so unlike a final norm it never applies to an
    intermediate: `forward_intermediates(norm=True)` returns the stages' outputs as they are.
    It is sized for the last stage and dropped with any stage pruned away.
    """

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return stage_group_matcher(coarse, tail=r"^conv_head")

    def _prune_tail(self, prune_norm: bool, prune_end: bool) -> None:
        if prune_end:
            self.conv_head = nn.Identity()

    def pre_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(x)
