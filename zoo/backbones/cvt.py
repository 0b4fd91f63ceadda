"""CvT: a three-stage vision transformer with convolutional token embeddings and projections.

`CvT: Introducing Convolutions to Vision Transformers`
    Wu et al., ICCV 2021, arXiv 2103.15808, https://github.com/microsoft/CvT

Each stage starts with a convolutional token embedding (an overlapping strided conv and
LayerNorm), so the token map shrinks and widens stage by stage. In every block, queries, keys
and values come from a convolutional projection: a depthwise 3x3 conv and BatchNorm on the
token map (stride 1 for queries, stride 2 for keys and values, which cuts their number by 4),
then the usual linear projection. There is no position embedding; a class token joins the
tokens in the last stage only and is what the classifier reads.

Parameter count at 224 with the 1000-class head, against the official model-zoo table (README
of the official repository; the paper's Table 2 gives 20M):

    cvt_13   19.98M   (table: 20M)

Our own implementation; the facts (embedding kernels 7-3-3 with strides 4-2-2, widths 64-192-384,
heads 1-3-6, depths 1-2-10, MLP ratio 4, QuickGELU, bias on q/k/v, attention scaled by the full
width as the official code does) follow the official repository (MIT license). `forward_features`
returns the normed tokens, class token first, like timm's vision transformers; the stage outputs
of `forward_intermediates` (and `features_only`) are NCHW maps of the spatial tokens.
"""

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, LayerNorm2d, Mlp, QuickGELU, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, named_apply, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["CvT"]


class ConvEmbed(nn.Module):
    """Convolutional token embedding: an overlapping strided conv, then LayerNorm (NCHW)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        padding: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, **dd)
        self.norm = LayerNorm2d(out_chs, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ConvProjection(nn.Module):
    """Depthwise conv + BatchNorm on the token map, returned as tokens (B, N', C)."""

    def __init__(self, dim: int, kernel_size: int = 3, stride: int = 1, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(
            dim, dim, kernel_size, stride, kernel_size // 2, groups=dim, bias=False, **dd
        )
        self.bn = nn.BatchNorm2d(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).flatten(2).transpose(1, 2)


class ConvAttention(nn.Module):
    """Multi-head attention whose q/k/v come from convolutional projections of the token map.

    Prefix (class) tokens skip the convolution and join q, k and v unchanged before the linear
    projections.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        kernel_size: int = 3,
        stride_q: int = 1,
        stride_kv: int = 2,
        num_prefix_tokens: int = 0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.num_prefix_tokens = num_prefix_tokens
        self.scale = dim**-0.5  # NOTE: the official code scales by the full width, not per head
        self.conv_proj_q = ConvProjection(dim, kernel_size, stride_q, **dd)
        self.conv_proj_k = ConvProjection(dim, kernel_size, stride_kv, **dd)
        self.conv_proj_v = ConvProjection(dim, kernel_size, stride_kv, **dd)
        self.proj_q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.proj_k = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.proj_v = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        prefix, spatial = x[:, : self.num_prefix_tokens], x[:, self.num_prefix_tokens :]
        token_map = spatial.transpose(1, 2).reshape(b, c, size[0], size[1])
        q = torch.cat([prefix, self.conv_proj_q(token_map)], dim=1)
        k = torch.cat([prefix, self.conv_proj_k(token_map)], dim=1)
        v = torch.cat([prefix, self.conv_proj_v(token_map)], dim=1)
        q, k, v = (
            self._heads(self.proj_q(q)),
            self._heads(self.proj_k(k)),
            self._heads(self.proj_v(v)),
        )
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, -1, c)))


class CvTBlock(nn.Module):
    """Pre-norm convolutional attention and MLP on tokens, both residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_prefix_tokens: int = 0,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm(dim, eps=1e-5, **dd)
        self.attn = ConvAttention(
            dim, num_heads, qkv_bias, num_prefix_tokens=num_prefix_tokens, **dd
        )
        self.norm2 = LayerNorm(dim, eps=1e-5, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=QuickGELU, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CvTStage(nn.Module):
    """Convolutional token embedding (unless it is the model's stem), optional class token,
    transformer blocks. Returns the token map (NCHW) and the class token (B, 0 or 1, C)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        num_heads: int,
        downsample: bool,
        cls_token: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rates: list[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        self.downsample = ConvEmbed(in_chs, out_chs, 3, 2, 1, **dd) if downsample else nn.Identity()
        self.num_prefix_tokens = 1 if cls_token else 0
        self.cls_token = nn.Parameter(torch.empty(1, 1, out_chs, **dd)) if cls_token else None
        rates = drop_path_rates or [0.0] * depth
        self.blocks = nn.ModuleList(
            [
                CvTBlock(
                    out_chs,
                    num_heads,
                    mlp_ratio,
                    qkv_bias,
                    num_prefix_tokens=self.num_prefix_tokens,
                    drop_path=rates[i],
                    **dd,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.downsample(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                tokens = checkpoint(block, tokens, (h, w), use_reentrant=False)
            else:
                tokens = block(tokens, (h, w))
        prefix, spatial = tokens[:, : self.num_prefix_tokens], tokens[:, self.num_prefix_tokens :]
        return spatial.transpose(1, 2).reshape(b, c, h, w), prefix


class CvT(nn.Module):
    """Convolutional vision Transformer.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: 'token' (the class token, as the paper), 'avg' (mean of the spatial
            tokens) or '' (no pooling: the tokens).
        depths: Blocks per stage.
        dims: Channels per stage.
        num_heads: Attention heads per stage.
        cls_tokens: Per stage, whether a class token joins the tokens.
        mlp_ratio: MLP hidden width / channels.
        qkv_bias: Bias of the q/k/v linear projections.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        depths: tuple[int, ...] = (1, 2, 10),
        dims: tuple[int, ...] = (64, 192, 384),
        num_heads: tuple[int, ...] = (1, 3, 6),
        cls_tokens: tuple[bool, ...] = (False, False, True),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.stem = ConvEmbed(in_chans, dims[0], 7, 4, 2, **dd)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.ModuleList(
            [
                CvTStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depths[i],
                    num_heads[i],
                    downsample=i > 0,
                    cls_token=cls_tokens[i],
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop_path_rates=rates[i].tolist(),
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.num_prefix_tokens = self.stages[-1].num_prefix_tokens
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = LayerNorm(self.num_features, eps=1e-5, **dd)
        self.global_pool = self._check_pool(global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = (
            nn.Linear(self.num_features, num_classes, **dd) if num_classes else nn.Identity()
        )
        named_apply(_init_weights, self)

    def _check_pool(self, global_pool: str) -> str:
        if global_pool not in ("", "avg", "token"):
            raise ValueError(f"global_pool must be '', 'avg' or 'token', got {global_pool!r}")
        if global_pool == "token" and not self.num_prefix_tokens:
            raise ValueError("global_pool='token' needs a class token in the last stage")
        return global_pool

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [
                (r"^stages\.(\d+)\.(?:downsample|cls_token)", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"stages.{i}.cls_token" for i, s in enumerate(self.stages) if s.num_prefix_tokens}

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
            self.global_pool = self._check_pool(global_pool)
        weight = self.norm.weight if isinstance(self.norm, nn.LayerNorm) else self.stem.proj.weight
        dd = {"device": weight.device, "dtype": weight.dtype}
        self.head = (
            nn.Linear(self.num_features, num_classes, **dd) if num_classes else nn.Identity()
        )
        self.head.train(self.training)

    def _tokens(self, x: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        return torch.cat([prefix, x.flatten(2).transpose(1, 2)], dim=1)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the token maps (NCHW) of the stages in `indices`.

        The final output is the tokens, as from `forward_features`; `norm` applies the final
        LayerNorm to the last stage's map when it is taken.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_index = len(self.stages) - 1
        stages = (
            self.stages
            if torch.jit.is_scripting() or not stop_early
            else self.stages[: max_index + 1]
        )
        intermediates = []
        x = self.stem(x)
        prefix = x.new_zeros(0)
        i = 0
        for i, stage in enumerate(stages):
            x, prefix = stage(x)
            if i in take_indices:
                if norm and i == last_index:
                    intermediates.append(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
                else:
                    intermediates.append(x)
        if intermediates_only:
            return intermediates
        tokens = self._tokens(x, prefix)
        return (self.norm(tokens) if i == last_index else tokens), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last index kept (and the norm, head) for feature extraction."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for (and applied to) the last stage only
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.num_prefix_tokens = self.stages[-1].num_prefix_tokens
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normed tokens (B, prefix + H*W, C), class token first."""
        x = self.stem(x)
        prefix = x.new_zeros(0)
        for stage in self.stages:
            x, prefix = stage(x)
        return self.norm(self._tokens(x, prefix))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module, name: str = "") -> None:
    # as the official 'trunc_norm' init: Linear and class tokens N(0, 0.02) truncated, zero
    # biases; convs keep PyTorch's default initialisation
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, CvTStage) and module.cls_token is not None:
        trunc_normal_(module.cls_token, std=0.02)


def _create_cvt(variant: str, pretrained: bool = False, **kwargs) -> CvT:
    return build_model_with_cfg(
        CvT,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2), feature_cls="getter"),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (14, 14),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.proj",
        "classifier": "head",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs({"cvt_13": _cfg()})


@register_model
def cvt_13(pretrained: bool = False, **kwargs) -> CvT:
    args = dict(depths=(1, 2, 10), dims=(64, 192, 384), num_heads=(1, 3, 6))
    return _create_cvt("cvt_13", pretrained=pretrained, **dict(args, **kwargs))
