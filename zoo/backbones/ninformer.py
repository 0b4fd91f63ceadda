"""NiNformer: an isotropic transformer whose attention is a token-mixing generated gate.

`NiNformer: A Network in Network Transformer with Token Mixing Generated Gating Function`
    Abdullah and Aydin, arXiv 2403.02411, https://github.com/Abdullah-88/NiNformer

`ninformer` is the paper's CIFAR setting (the official repository's train.py): 32x32 inputs cut
into 4x4 patches by a strided conv (an 8 x 8 grid of 256-channel tokens), 4 NiN blocks with
hidden widths 512 (outer FFN, inner token and channel MLPs), dropout 0.5 inside every MLP,
average pooling and a 10-class classifier. Each block is
`x + gating_unit(norm(x))` then `x + ffn(norm(x))`, with one LayerNorm shared by the two
sub-layers, as in the official code. The paper reports accuracies but no parameter counts; this
setting holds 2,652,170 parameters (the official code's count with 3 input channels, 10 classes).

Our own implementation (zoo/operators/ninformer.py); the facts follow the official repository.
The token-mixing MLPs are built for the 8 x 8 grid; other inputs are resampled to it around that
MLP only, so any input size works.
"""

import torch
from timm.layers import ClassifierHead, LayerNorm2d, Mlp, get_device_dtype
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
)
from timm.models._features import feature_take_indices
from torch import nn

from zoo.operators.ninformer import MixerGatingUnit

__all__ = ["NiNformer"]


class NiNBlock(nn.Module):
    """Gating unit then FFN, each residual, both after the same (shared) LayerNorm."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        grid_size: int,
        drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm = LayerNorm2d(dim, eps=1e-5, **dd)
        self.gating = MixerGatingUnit(dim, grid_size, hidden, hidden, drop, **dd)
        self.ffn = Mlp(dim, hidden, drop=drop, use_conv=True, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gating(self.norm(x))
        return x + self.ffn(self.norm(x))


class NiNformer(nn.Module):
    """NiNformer for image classification.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        img_size: Input size the token MLPs are built for.
        patch_size: Side of the square patches (the conv stem's kernel and stride).
        embed_dim: Token channels.
        depth: NiN blocks.
        hidden: Hidden width of every MLP (outer FFN, inner token and channel MLPs).
        drop_rate: Dropout before the classifier.
        proj_drop_rate: Dropout inside the MLPs (0.5 in the paper's setting).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 10,
        global_pool: str = "avg",
        img_size: int = 32,
        patch_size: int = 4,
        embed_dim: int = 256,
        depth: int = 4,
        hidden: int = 512,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stem = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, **dd)
        grid_size = img_size // patch_size
        self.blocks = nn.Sequential(
            *[NiNBlock(embed_dim, hidden, grid_size, proj_drop_rate, **dd) for _ in range(depth)]
        )
        self.feature_info = [
            dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}")
            for i in range(depth)
        ]
        self.num_features = self.head_hidden_size = embed_dim
        self.head = ClassifierHead(
            embed_dim, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=r"^blocks\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(
            num_classes, global_pool, in_features=self.num_features, **get_device_dtype(self)
        )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the outputs of the blocks in `indices` (NCHW)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        blocks = (
            self.blocks
            if torch.jit.is_scripting() or not stop_early
            else self.blocks[: max_index + 1]
        )
        intermediates = []
        x = self.stem(x)
        for i, block in enumerate(blocks):
            x = block(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the last index kept (and the head) for feature extraction."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_ninformer(variant: str, pretrained: bool = False, **kwargs) -> NiNformer:
    return build_model_with_cfg(
        NiNformer,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "stem",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: the cfg carries the paper's CIFAR setting only
default_cfgs = generate_default_cfgs({"ninformer": _cfg()})


@register_model
def ninformer(pretrained: bool = False, **kwargs) -> NiNformer:
    args = dict(embed_dim=256, depth=4, hidden=512, proj_drop_rate=0.5)
    return _create_ninformer("ninformer", pretrained=pretrained, **dict(args, **kwargs))
