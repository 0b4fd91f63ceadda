"""TransNeXt: aggregated (foveal) attention and Convolutional GLU in a four-stage transformer.

`TransNeXt: Robust Foveal Visual Perception for Vision Transformers`
    Shi, CVPR 2024, arXiv 2311.17132, https://github.com/DaiShiResearch/TransNeXt

In stages 1-3 each query attends, under one softmax, to the keys of its 3x3 neighbourhood
(fine, "foveal") and to the keys of an average-pooled copy of the whole map (coarse), so every
token sees the entire image in every layer. Queries and keys are L2-normalised; the logits are
scaled by a learnt per-head temperature and by log(number of keys), and a learnt query
embedding is added to the queries. The neighbourhood branch also mixes its values with weights
from learnable tokens ("dynamic local bias"). The pooled keys get a continuous relative position
bias from a small MLP over log-spaced offsets. Stage 4 uses the same attention over all tokens.
The channel mixer is the Convolutional GLU (zoo/operators/convglu.py).

Parameter counts at 224 with the 1000-class head, against the official model-zoo table (README
of the official repository, "ImageNet-1K 224x224 pre-trained models"; the paper's Table 2):

    transnext_micro   12.81M   (table: 12.8M)
    transnext_tiny    28.26M   (table: 28.2M)

Our own implementation in plain PyTorch (no CUDA kernels); the facts (widths, depths, heads,
MLP ratios 8-8-4-4, pooling ratios 8-4-2, 3x3 windows, 512-wide position MLP, coordinates scaled
by the pre-training feature size, initialisations) follow the official repository's native
version (Apache-2.0 license). Pool sizes, padding masks, sequence-length scales and position
biases are computed from the actual feature size, so any input size works.
"""

import math

import torch
import torch.nn.functional as F
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, trunc_normal_
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    named_apply,
    register_model,
)
from timm.models._features_fx import register_notrace_function
from torch import nn

from zoo.operators.convglu import ConvGLU

from ._hierarchical import NormHeadNet, stage_group_matcher

__all__ = ["TransNeXt"]


def _axis_offsets(
    length: int, pooled: int, pretrain: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct (query - pooled cell centre) offsets along one axis, in units of the
    pre-training feature size x 8, and each (query, cell) pair's index among them, (L, P).

    Worked out on integers from the sizes alone (no data-dependent `torch.unique`, so that the
    model also runs on the meta device): adaptive pooling's cell j spans
    [floor(jL/P), ceil((j+1)L/P)), so twice the offset of query q from its centre is integral.
    """
    doubled: list[int] = []
    for q in range(length):
        for j in range(pooled):
            start = (j * length) // pooled
            end = -((-(j + 1) * length) // pooled)
            doubled.append(2 * q - (start + end - 1))
    distinct: list[int] = []
    for value in sorted(doubled):
        if len(distinct) == 0 or distinct[-1] != value:
            distinct.append(value)
    position: dict[int, int] = {}
    for i, value in enumerate(distinct):
        position[value] = i
    index = torch.tensor([position[value] for value in doubled], device=device)
    values = torch.tensor(distinct, dtype=torch.float32, device=device)
    return values * (4.0 / max(pretrain - 1, 1)), index.reshape(length, pooled)


@register_notrace_function
def pooled_position_coords(
    height: int,
    width: int,
    pool_height: int,
    pool_width: int,
    pretrain_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-spaced relative coordinates for the continuous position bias of pooled keys.

    Returns the distinct (dy, dx) offsets, (U, 2), and for every (query, pooled key) pair its
    row among them, (H*W, Ph*Pw). Offsets are measured in units of the pre-training feature
    size (as the official code does, so that a model extrapolates to other sizes), then mapped
    by sign(t) * log2(1 + |t|) / log2(8). The MLP then runs once per distinct offset.
    """
    values_h, index_h = _axis_offsets(height, pool_height, pretrain_size, device)
    values_w, index_w = _axis_offsets(width, pool_width, pretrain_size, device)
    grid = torch.meshgrid([values_h, values_w], indexing="ij")
    coords = torch.stack(grid, dim=-1).reshape(-1, 2)
    coords = torch.sign(coords) * torch.log2(coords.abs() + 1.0) / 3.0  # log2(8)
    index = index_h[:, None, :, None] * values_w.numel() + index_w[None, :, None, :]
    return coords, index.reshape(height * width, pool_height * pool_width)


@register_notrace_function
def local_window_mask(
    height: int, width: int, window: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each pixel's window: which positions fall outside the map (N, L), and how many don't."""
    ones = torch.ones(1, 1, height, width, device=device)
    inside = F.unfold(ones, window, padding=window // 2)[0].transpose(0, 1)
    return inside == 0, inside.sum(-1, keepdim=True)


@register_notrace_function
def pool_grid_size(height: int, width: int, sr_ratio: int) -> tuple[int, int]:
    """The pooled map is the feature map / sr_ratio (at least 1x1)."""
    return max(1, height // sr_ratio), max(1, width // sr_ratio)


# leaves for torch.fx whichever module's forward is traced: timm's registrations above only
# patch the globals of the traced root's module, and `TransNeXt.forward` lives in
# _hierarchical.py
torch.fx.wrap("pooled_position_coords")
torch.fx.wrap("local_window_mask")
torch.fx.wrap("pool_grid_size")


class PositionMLP(nn.Module):
    """Continuous relative position bias: an MLP from log-spaced (dy, dx) to one bias per head."""

    def __init__(self, num_heads: int, hidden: int = 512, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(2, hidden, **dd)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_heads, **dd)

    def forward(self, coords: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(heads, N, P) biases for the pairs in `index` (N, P) of rows of `coords` (U, 2)."""
        table = self.fc2(self.act(self.fc1(coords.to(self.fc1.weight.dtype))))  # U, heads
        return table.transpose(0, 1)[:, index]


class _CosineAttentionBase(nn.Module):
    """What both attentions share: length-scaled cosine logits with a learnt query embedding."""

    def __init__(self, dim: int, num_heads: int, pretrain_size: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.pretrain_size = pretrain_size
        self.temperature = nn.Parameter(torch.empty(num_heads, 1, 1, **dd))
        self.query_embedding = nn.Parameter(torch.empty(num_heads, 1, self.head_dim, **dd))
        self.cpb = PositionMLP(num_heads, **dd)

    def init_weights(self) -> None:
        # softplus(temperature) starts at 1 / 0.24
        nn.init.constant_(self.temperature, math.log(math.expm1(1 / 0.24)))
        trunc_normal_(self.query_embedding, std=0.02)

    def scaled_queries(self, q: torch.Tensor, seq_length: torch.Tensor) -> torch.Tensor:
        """(normalize(q) + query embedding) * softplus(temperature) * log(number of keys)."""
        scale = (F.softplus(self.temperature) * torch.log(seq_length)).to(q.dtype)
        return (F.normalize(q, dim=-1) + self.query_embedding) * scale


class AggregatedAttention(_CosineAttentionBase):
    """Aggregated attention: 3x3 neighbourhood keys and pooled-map keys under one softmax (NCHW).

    Args:
        dim: Channels.
        num_heads: Attention heads.
        sr_ratio: The pooled map is the feature map / sr_ratio.
        window_size: Side of the (odd) neighbourhood window.
        qkv_bias: Bias of the query and key/value projections.
        pretrain_size: Feature-map side at pre-training, the unit of the position coordinates.
        attn_drop: Dropout on the attention weights.
        proj_drop: Dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        window_size: int = 3,
        qkv_bias: bool = True,
        pretrain_size: int = 56,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__(dim, num_heads, pretrain_size, device=device, dtype=dtype)
        dd = {"device": device, "dtype": dtype}
        if window_size % 2 != 1:
            raise ValueError(f"window_size must be odd, got {window_size}")
        self.sr_ratio = sr_ratio
        self.window_size = window_size
        local_len = window_size**2
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias, **dd)
        self.sr = nn.Conv2d(dim, dim, 1, **dd)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim, **dd)
        self.relative_pos_bias_local = nn.Parameter(torch.empty(num_heads, local_len, **dd))
        # the dynamic local bias: query-dependent weights on the neighbourhood's values
        self.learnable_tokens = nn.Parameter(torch.empty(num_heads, self.head_dim, local_len, **dd))
        self.learnable_bias = nn.Parameter(torch.empty(num_heads, 1, local_len, **dd))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def init_weights(self) -> None:
        super().init_weights()
        trunc_normal_(self.relative_pos_bias_local, std=0.0004)
        trunc_normal_(self.learnable_tokens, std=0.02)
        nn.init.zeros_(self.learnable_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        heads, head_dim = self.num_heads, self.head_dim
        local_len = self.window_size * self.window_size
        tokens = x.flatten(2).transpose(1, 2)  # B, N, C

        # keys/values of the pooled map: 1x1 conv, GELU, average pool, LayerNorm
        pool_h, pool_w = pool_grid_size(h, w, self.sr_ratio)
        pooled = F.adaptive_avg_pool2d(self.act(self.sr(x)), (pool_h, pool_w))
        pooled = self.norm(pooled.flatten(2).transpose(1, 2))  # B, P, C
        pool_len = pooled.shape[1]
        k_pool, v_pool = (
            self.kv(pooled).reshape(b, pool_len, 2 * heads, head_dim).transpose(1, 2).chunk(2, 1)
        )

        outside, inside_len = local_window_mask(h, w, self.window_size, x.device)
        q = self.q(tokens).reshape(b, n, heads, head_dim).transpose(1, 2)  # B, heads, N, d
        q_scaled = self.scaled_queries(q, inside_len + pool_len)

        # keys/values of each pixel's window; keys are normalised before unfolding
        k_local, v_local = self.kv(tokens).chunk(2, dim=-1)
        k_local = F.normalize(k_local.reshape(b, n, heads, head_dim), dim=-1).reshape(b, n, c)
        kv_local = torch.cat([k_local, v_local], dim=-1).transpose(1, 2).reshape(b, 2 * c, h, w)
        kv_local = F.unfold(kv_local, self.window_size, padding=self.window_size // 2)
        kv_local = kv_local.reshape(b, 2 * heads, head_dim, local_len, n).permute(0, 1, 4, 2, 3)
        k_local, v_local = kv_local.chunk(2, dim=1)  # B, heads, N, d, L

        attn_local = (q_scaled.unsqueeze(-2) @ k_local).squeeze(-2)
        attn_local = attn_local + self.relative_pos_bias_local.unsqueeze(1)
        attn_local = attn_local.masked_fill(outside, float("-inf"))
        coords, index = pooled_position_coords(h, w, pool_h, pool_w, self.pretrain_size, x.device)
        attn_pool = q_scaled @ F.normalize(k_pool, dim=-1).transpose(-2, -1)
        attn_pool = attn_pool + self.cpb(coords, index)

        # one softmax over neighbourhood and pooled keys, then each set aggregates its values
        attn = torch.cat([attn_local, attn_pool], dim=-1).softmax(dim=-1)
        attn = self.attn_drop(attn)
        attn_local, attn_pool = attn.split([local_len, pool_len], dim=-1)
        local_weights = F.normalize(q, dim=-1) @ self.learnable_tokens + self.learnable_bias
        local_weights = local_weights + attn_local
        out = (local_weights.unsqueeze(-2) @ v_local.transpose(-2, -1)).squeeze(-2)
        out = out + attn_pool @ v_pool
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
        return out.transpose(1, 2).reshape(b, c, h, w)


class FullAttention(_CosineAttentionBase):
    """Stage-4 attention: the same cosine, length-scaled, position-biased logits over all tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        pretrain_size: int = 7,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__(dim, num_heads, pretrain_size, device=device, dtype=dtype)
        dd = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x.flatten(2).transpose(1, 2))
        q, k, v = qkv.reshape(b, n, 3 * self.num_heads, self.head_dim).transpose(1, 2).chunk(3, 1)
        coords, index = pooled_position_coords(h, w, h, w, self.pretrain_size, x.device)
        q = self.scaled_queries(q, q.new_ones((1, 1)) * n)
        out = F.scaled_dot_product_attention(
            q,
            F.normalize(k, dim=-1),
            v,
            attn_mask=self.cpb(coords, index).to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=1.0,  # the scale is in the queries
        )
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
        return out.transpose(1, 2).reshape(b, c, h, w)


class TransNeXtBlock(nn.Module):
    """Pre-norm attention then Convolutional GLU, both residual (NCHW)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        pretrain_size: int,
        mlp_ratio: float = 4.0,
        window_size: int = 3,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        if sr_ratio > 1:
            self.attn = AggregatedAttention(
                dim, num_heads, sr_ratio, window_size, qkv_bias, pretrain_size, **dd
            )
        else:
            self.attn = FullAttention(dim, num_heads, qkv_bias, pretrain_size, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.mlp = ConvGLU(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class OverlapPatchEmbed(nn.Module):
    """Overlapping strided conv, then LayerNorm over channels."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int, stride: int, device=None, dtype=None
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, **dd)
        self.norm = LayerNorm2d(out_chs, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class TransNeXtStage(nn.Module):
    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        num_heads: int,
        sr_ratio: int,
        pretrain_size: int,
        mlp_ratio: float,
        downsample: bool,
        window_size: int = 3,
        qkv_bias: bool = True,
        drop_path_rates: list[float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.grad_checkpointing = False
        self.downsample = (
            OverlapPatchEmbed(in_chs, out_chs, 3, 2, **dd) if downsample else nn.Identity()
        )
        rates = drop_path_rates or [0.0] * depth
        self.blocks = nn.Sequential(
            *[
                TransNeXtBlock(
                    out_chs,
                    num_heads,
                    sr_ratio,
                    pretrain_size,
                    mlp_ratio=mlp_ratio,
                    window_size=window_size,
                    qkv_bias=qkv_bias,
                    drop_path=rates[i],
                    **dd,
                )
                for i in range(depth)
            ]
        )
        self.norm = LayerNorm2d(out_chs, eps=1e-6, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)


class TransNeXt(NormHeadNet):
    """TransNeXt.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier classes (0 for no classifier).
        global_pool: Global pooling type of the head.
        depths: Blocks per stage.
        dims: Channels per stage.
        num_heads: Attention heads per stage.
        mlp_ratios: Per stage, the hidden width of the MLP the Convolutional GLU replaces.
        sr_ratios: Per stage, feature size / pooled size of aggregated attention (1: full
            attention).
        window_size: Side of the neighbourhood window of aggregated attention.
        qkv_bias: Bias of the query/key/value projections.
        pretrain_size: Input side at pre-training; position coordinates are measured in units
            of the pre-training feature size so that other input sizes extrapolate.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, increasing linearly over all blocks.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: tuple[int, ...] = (2, 2, 15, 2),
        dims: tuple[int, ...] = (48, 96, 192, 384),
        num_heads: tuple[int, ...] = (2, 4, 8, 16),
        mlp_ratios: tuple[float, ...] = (8, 8, 4, 4),
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
        window_size: int = 3,
        qkv_bias: bool = True,
        pretrain_size: int = 224,
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
        self.stem = OverlapPatchEmbed(in_chans, dims[0], 7, 4, **dd)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        self.stages = nn.Sequential(
            *[
                TransNeXtStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depths[i],
                    num_heads[i],
                    sr_ratios[i],
                    pretrain_size // (4 * 2**i),
                    mlp_ratios[i],
                    downsample=i > 0,
                    window_size=window_size,
                    qkv_bias=qkv_bias,
                    drop_path_rates=rates[i].tolist(),
                    **dd,
                )
                for i in range(len(depths))
            ]
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}")
            for i in range(len(depths))
        ]
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.Identity()  # every stage ends in its own norm
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
        )
        named_apply(_init_weights, self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return stage_group_matcher(coarse, tail=r"^stages\.(\d+)\.norm")

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {"query_embedding", "relative_pos_bias_local", "cpb", "temperature"}


def _init_weights(module: nn.Module, name: str = "") -> None:
    # the official scheme: Linear (and the GLU's 1x1 convs, Linear there) N(0, 0.02) truncated,
    # other convs He-normal on fan-out, zero biases
    if isinstance(module, nn.Linear) or name.endswith(("mlp.fc1", "mlp.fc2")):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0, math.sqrt(2.0 / (fan_out // module.groups)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, _CosineAttentionBase):
        module.init_weights()


def _create_transnext(variant: str, pretrained: bool = False, **kwargs) -> TransNeXt:
    return build_model_with_cfg(
        TransNeXt,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.proj",
        "classifier": "head.fc",
        **kwargs,
    }


# no weights can be fetched offline: these cfgs carry the architecture's defaults only
default_cfgs = generate_default_cfgs(
    {
        "transnext_micro": _cfg(),
        "transnext_tiny": _cfg(),
    }
)


@register_model
def transnext_micro(pretrained: bool = False, **kwargs) -> TransNeXt:
    args = dict(depths=(2, 2, 15, 2), dims=(48, 96, 192, 384), num_heads=(2, 4, 8, 16))
    return _create_transnext("transnext_micro", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def transnext_tiny(pretrained: bool = False, **kwargs) -> TransNeXt:
    args = dict(depths=(2, 2, 15, 2), dims=(72, 144, 288, 576), num_heads=(3, 6, 12, 24))
    return _create_transnext("transnext_tiny", pretrained=pretrained, **dict(args, **kwargs))
