"""The 1D operator grid: one MetaFormer skeleton for sequences, any sequence mixer of the zoo.

`MetaFormer Baselines for Vision`
    Yu et al., TPAMI 2024, arXiv 2210.13452, https://github.com/sail-sg/metaformer

The sequence operators of the seed papers (long convolutions, SGConv, FlashFFTConv, Orchid, TCNCA;
zoo/operators/seq_*.py) are compared as the 2D operators are in metaformer_grid: at equal depth,
width and recipe, in one macro-architecture whose token mixer alone changes. The skeleton is
MetaFormer's, in 1D: a stem, four stages of (norm -> sequence mixer -> norm -> MLP) blocks with
layer scale and stochastic depth, stride-2 downsampling between stages, a final norm, mean pooling
and a linear head. Inputs are sequences (B, in_chans, L), any L >= 1.

    timm.create_model("metaformer_1d", mixer="orchid")   # any registered sequence mixer
    timm.create_model("metaformer_1d_orchid")            # the same, as a registry entry

They are NOT image models: their pretrained cfg carries the note `SEQUENCE_NOTE`, and asking one
for images (`representation="image"`, which conf/backbone/metaformer_1d.yaml passes from the data
config) raises a ValueError that says where they run. timm's model suite assumes images and does
not apply; their contract is tests/zoo/test_sequence_mixers.py.
"""

from contextlib import nullcontext
from typing import Any

import torch
from timm.layers import DropPath
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from zoo.operators.seq_registry import create_sequence_mixer, list_sequence_mixers

from ._cfg_notes import has_cfg_note

__all__ = ["SEQUENCE_NOTE", "MetaFormer1d", "is_sequence_model"]

#: In the `notes` of every 1D sequence model's pretrained cfg.
SEQUENCE_NOTE = "sequence_1d"


def is_sequence_model(name: str) -> bool:
    """Whether the timm model `name` is one of these 1D sequence models (by its cfg note)."""
    return has_cfg_note(name, SEQUENCE_NOTE)


class LayerNorm1d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, L): per position, so no statistic mixes time steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MetaFormer1dBlock(nn.Module):
    """x + mixer(norm(x)), then x + mlp(norm(x)), each with layer scale and drop path."""

    def __init__(
        self,
        dim: int,
        mixer: str,
        mixer_kwargs: dict[str, Any] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float | None = 1e-5,
    ):
        super().__init__()
        self.norm1 = LayerNorm1d(dim)
        self.mixer = create_sequence_mixer(mixer, dim, **(mixer_kwargs or {}))
        self.norm2 = LayerNorm1d(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.GELU(), nn.Conv1d(hidden, dim, 1))
        scale = layer_scale_init_value
        self.ls1 = nn.Parameter(torch.full((dim, 1), scale)) if scale else None
        self.ls2 = nn.Parameter(torch.full((dim, 1), scale)) if scale else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(self.norm1(x))
        x = x + self.drop_path(y * self.ls1 if self.ls1 is not None else y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y * self.ls2 if self.ls2 is not None else y)


class MetaFormer1dStage(nn.Module):
    """Stride-2 downsampling (except the first stage), then blocks."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        downsample: bool,
        drop_paths: list[float],
        **block_kwargs,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = (
            nn.Sequential(LayerNorm1d(in_chs), nn.Conv1d(in_chs, out_chs, 3, stride=2, padding=1))
            if downsample or in_chs != out_chs
            else nn.Identity()
        )
        self.blocks = nn.Sequential(
            *[
                MetaFormer1dBlock(out_chs, drop_path=drop_paths[i], **block_kwargs)
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return torch.utils.checkpoint.checkpoint_sequential(
                self.blocks, len(self.blocks), x, use_reentrant=False
            )
        return self.blocks(x)


class MetaFormer1d(nn.Module):
    """A MetaFormer over sequences (B, in_chans, L) with a registered sequence mixer.

    Args:
        in_chans: Input features per time step.
        num_classes: Outputs of the linear head (0: none, `forward` returns pooled features).
        global_pool: `avg` (mean over time) or `` (no pooling in `forward_head`).
        depths: Blocks per stage.
        dims: Channels per stage.
        mixer: Name of a sequence mixer (zoo.operators.seq_registry).
        mixer_kwargs: Extra arguments of the mixer (e.g. `causal`, `kernel_size`).
        mlp_ratio: MLP hidden width over the block width.
        drop_rate: Dropout before the head.
        drop_path_rate: Stochastic depth, linearly increasing over blocks.
        layer_scale_init_value: Initial layer scale (None: none).
        representation: What the data gives; anything but `sequence` is refused (see module doc).
        device: Device of the parameters.
        dtype: Type of the parameters.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 4, 2),
        dims: tuple[int, ...] = (32, 64, 96, 128),
        mixer: str = "longconv",
        mixer_kwargs: dict[str, Any] | None = None,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float | None = 1e-5,
        representation: str = "sequence",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if representation != "sequence":
            raise ValueError(
                f"metaformer_1d ({mixer}) is a 1D sequence model: it takes (B, C, L) sequences, "
                f"not images (representation={representation!r}). Use it with task=volatility, "
                "whose data gives sequences to backbone=metaformer_1d."
            )
        # timm builds models on any device (`meta` included) through these two arguments
        with torch.device(device) if device is not None else nullcontext():
            self.num_classes, self.in_chans, self.global_pool = num_classes, in_chans, global_pool
            self.num_features = self.head_hidden_size = dims[-1]
            self.drop_rate = drop_rate
            self.stem = nn.Sequential(
                nn.Conv1d(in_chans, dims[0], 3, padding=1), LayerNorm1d(dims[0])
            )
            rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
            stages, self.feature_info, start, prev = [], [], 0, dims[0]
            for i, (depth, dim) in enumerate(zip(depths, dims)):
                stages.append(MetaFormer1dStage(
                    prev, dim, depth, downsample=i > 0, drop_paths=rates[start : start + depth], mixer=mixer,
                    mixer_kwargs=mixer_kwargs, mlp_ratio=mlp_ratio, layer_scale_init_value=layer_scale_init_value,
                ))  # fmt: skip
                start, prev = start + depth, dim
                self.feature_info.append(
                    {"num_chs": dim, "reduction": 2**i, "module": f"stages.{i}"}
                )
            self.stages = nn.Sequential(*stages)
            self.norm = LayerNorm1d(dims[-1])
            self.head_drop = nn.Dropout(drop_rate)
            self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
            self.apply(self._init_weights)
        if dtype is not None:
            self.to(dtype)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv1d | nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {
            "stem": r"^stem",
            "blocks": r"^stages\.(\d+)"
            if coarse
            else [(r"^stages\.(\d+)\.blocks\.(\d+)", None), (r"^norm", (99999,))],
        }

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCL",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs at `indices` (timm's interface; maps are (B, C, L))."""
        if output_fmt != "NCL":
            raise ValueError(f"output_fmt must be 'NCL' for a sequence model, got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.stages), indices)
        intermediates = []
        x = self.stem(self._as_sequence(x))
        stages = self.stages if not stop_early else self.stages[: max_index + 1]
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                intermediates.append(self.norm(x) if norm and i == len(self.stages) - 1 else x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take

    @staticmethod
    def _as_sequence(x: torch.Tensor) -> torch.Tensor:
        """(B, C, L), or a one-row image (B, C, 1, L) as timm's cfg `input_size` describes it."""
        if x.ndim == 4 and x.shape[2] == 1:
            return x.squeeze(2)
        if x.ndim != 3:
            raise ValueError(
                f"metaformer_1d takes sequences (B, C, L), got a {x.ndim}D input {tuple(x.shape)}"
            )
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(self.stem(self._as_sequence(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(-1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_metaformer_1d(variant: str, pretrained: bool = False, **kwargs) -> MetaFormer1d:
    return build_model_with_cfg(
        MetaFormer1d,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        # timm's cfgs describe images (C, H, W): a sequence reads as one row, (C, 1, L)
        "input_size": (3, 1, 256),
        "pool_size": None,
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "first_conv": "stem.0",
        "classifier": "head",
        "notes": (SEQUENCE_NOTE,),
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "metaformer_1d": _cfg(),
        "test_metaformer_1d": _cfg(),
        **{f"metaformer_1d_{m}": _cfg() for m in list_sequence_mixers()},
    }
)


@register_model
def test_metaformer_1d(pretrained: bool = False, **kwargs) -> MetaFormer1d:
    """A tiny variant for tests (any `mixer=`)."""
    args = dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
    return _create_metaformer_1d("test_metaformer_1d", pretrained, **dict(args, **kwargs))


@register_model
def metaformer_1d(pretrained: bool = False, **kwargs) -> MetaFormer1d:
    """The 1D MetaFormer with the sequence mixer named by `mixer=` (default: longconv)."""
    return _create_metaformer_1d("metaformer_1d", pretrained, **kwargs)


def _register_variant(mixer: str) -> None:
    """Register `metaformer_1d_<mixer>`: a registry entry per operator, for listings and tables."""

    def variant(pretrained: bool = False, **kwargs) -> MetaFormer1d:
        return _create_metaformer_1d(
            f"metaformer_1d_{mixer}", pretrained, **dict(dict(mixer=mixer), **kwargs)
        )

    variant.__name__ = variant.__qualname__ = f"metaformer_1d_{mixer}"
    variant.__module__ = __name__
    variant.__doc__ = f"The 1D MetaFormer with the `{mixer}` sequence mixer."
    register_model(variant)


for _mixer in list_sequence_mixers():
    _register_variant(_mixer)
