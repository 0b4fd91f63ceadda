"""Factorization self-attention (FaSA), FaViT's token mixer.

`Factorization Vision Transformer: Modeling Long Range Dependency with Local Window Cost`
    Qin et al., arXiv 2312.08614, https://github.com/q2479036243/FaViT

FaSA splits the channels into groups and gives each group its own sparse attention, so that one
layer mixes fine and coarse information over the whole map at the cost of a local window:

- dilated-window groups: the keys and values of a group are sampled from the map with a k x k
  window of dilation d repeated over the map without overlap (stride d(k-1) + 1); the samples that
  share a position inside the window are averaged over all windows. Each query then attends to
  k^2 aggregated tokens whatever the input size, and every token of the map contributes to them.
  FaViT uses a dilation-1 group (fine) and a dilation-`sr_ratio` group (coarse);
- one small group (1/8 or 1/16 of the channels) attends to a spatially reduced copy of the map
  (a stride-`sr_ratio` conv, as in PVT), a global summary.

Each group's values get a 3x3 depthwise-conv positional term before the weighted sum, and the
groups' outputs are concatenated and projected, as in the official code.

Where we depart from the official code (the paper's operator, clean code): the official pools the
window samples with an adaptive average pool over a flattened (windows x channels) axis, which
also mixes channels; we average each channel over the windows, the aggregation the paper
describes. The query channels of a group are contiguous rather than interleaved per head, a
re-indexing of the same query projection. Maps are padded up to whole windows by reflection
(folded again where the map is smaller than the padding, so that any H, W >= 1 works), and to a
single stride by zeros before the reduction conv where they are smaller than `sr_ratio`.

Layout: NCHW in and out.
"""

import math

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, trunc_normal_
from timm.models import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = [
    "FactorizationSelfAttention",
    "dilated_window_tokens",
    "fasa_channel_groups",
    "reflect_pad_indices",
]


def fasa_channel_groups(dim: int, sr_ratio: int) -> list[int]:
    """Channel widths of FaSA's groups: [global, dilation 1, dilation sr_ratio (if sr_ratio > 1)].

    The official split is 2:7:7 of the channels with spatial reduction, 1:7 without.
    """
    shares = [2, 7, 7] if sr_ratio > 1 else [1, 7]
    if dim % sum(shares):
        raise ValueError(f"FaSA with sr_ratio={sr_ratio} needs dim divisible by {sum(shares)}")
    return [dim // sum(shares) * s for s in shares]


def reflect_pad_indices(size: int, padded: int, device: torch.device) -> torch.Tensor:
    """Indices that extend `size` positions to `padded` by reflection, folded as often as needed.

    Equal to `nn.ReflectionPad` on the trailing side where the padding is smaller than `size`;
    unlike it, valid for any size >= 1 (a single position repeats).
    """
    positions = torch.arange(padded, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions % period
    return torch.where(folded < size, folded, period - folded)


def dilated_window_tokens(x: torch.Tensor, window: int, dilation: int) -> torch.Tensor:
    """Aggregate (B, C, H, W) into the (B, C, window, window) tokens of dilated windows.

    Windows of `window` x `window` samples spaced `dilation` apart tile the (reflection-padded) map
    with stride `dilation * (window - 1) + 1`; token (i, j) is the mean over all windows of their
    sample (i, j), i.e. of the positions `(a * stride + i * dilation, b * stride + j * dilation)`.
    """
    stride = dilation * (window - 1) + 1
    height, width = x.shape[-2], x.shape[-1]
    padded_h = -(-height // stride) * stride
    padded_w = -(-width // stride) * stride
    if padded_h != height:
        x = x.index_select(2, reflect_pad_indices(height, padded_h, x.device))
    if padded_w != width:
        x = x.index_select(3, reflect_pad_indices(width, padded_w, x.device))
    batch, channels = x.shape[0], x.shape[1]
    x = x.reshape(batch, channels, padded_h // stride, stride, padded_w // stride, stride)
    # within a window, samples sit every `dilation` positions: exactly `window` of them
    x = x[:, :, :, ::dilation, :, ::dilation]
    return x.mean(dim=(2, 4))


class _WindowGroupKeyValues(nn.Module):
    """Keys and values of one dilated-window group: k^2 aggregated tokens per head."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        dilation: int,
        qkv_bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window = window
        self.dilation = dilation
        # shared by the heads, as in the official code
        self.fc = nn.Linear(self.head_dim, self.head_dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(self.head_dim, 2 * self.head_dim, bias=qkv_bias, **dd)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        tokens = dilated_window_tokens(x, self.window, self.dilation)
        tokens = tokens.reshape(batch, self.num_heads, self.head_dim, -1).transpose(-1, -2)
        key, value = self.kv(self.fc(tokens)).chunk(2, dim=-1)  # (B, heads, k^2, head_dim)
        grid = value.transpose(-1, -2).reshape(batch, -1, self.window, self.window)
        pos = self.pos(grid).reshape(batch, self.num_heads, self.head_dim, -1).transpose(-1, -2)
        return key, value + pos


class _ReducedGlobalKeyValues(nn.Module):
    """Keys and values of the global group: a stride-`sr_ratio` reduced map, one head."""

    def __init__(
        self,
        dim: int,
        sr_ratio: int,
        qkv_bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.sr_ratio = sr_ratio
        self.reduce = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio, **dd)
        self.norm = LayerNorm2d(dim, eps=1e-5, **dd)
        self.kv = nn.Conv2d(dim, 2 * dim, 1, bias=qkv_bias, **dd)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # like the official strided conv, trailing rows that fill no whole stride are left out;
        # a map smaller than one stride is zero-padded to one
        pad_h = max(self.sr_ratio - x.shape[-2], 0)
        pad_w = max(self.sr_ratio - x.shape[-1], 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        key, value = self.kv(self.norm(self.reduce(x))).chunk(2, dim=1)
        value = value + self.pos(value)
        # (B, 1 head, tokens, dim)
        return key.flatten(2).transpose(1, 2).unsqueeze(1), value.flatten(2).transpose(
            1, 2
        ).unsqueeze(1)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    attn = (query * query.shape[-1] ** -0.5) @ key.transpose(-1, -2)
    return attn.softmax(dim=-1) @ value


# a leaf for torch.fx: its padding depends on the input size
@register_notrace_module
class FactorizationSelfAttention(nn.Module):
    """FaSA over a (B, dim, H, W) map.

    Args:
        dim: Channels in and out.
        num_heads: Heads of each dilated-window group (the global group has one).
        sr_ratio: Spatial reduction of the global group, and dilation of the coarse window group
            (no coarse group when 1).
        window: Window side k; each query of a window group attends to k^2 tokens.
        qkv_bias: Biases on the query, key and value projections.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        sr_ratio: int = 1,
        window: int = 7,
        qkv_bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.groups = fasa_channel_groups(dim, sr_ratio)
        if any(width % num_heads for width in self.groups[1:]):
            raise ValueError(
                f"FaSA window groups {self.groups[1:]} must divide into {num_heads} heads"
            )
        self.num_heads = num_heads
        self.query = nn.Conv2d(dim, dim, 1, bias=qkv_bias, **dd)
        self.global_kv = _ReducedGlobalKeyValues(self.groups[0], sr_ratio, qkv_bias, **dd)
        local = dim - self.groups[0]
        # one depthwise + pointwise conv produces the inputs of all window groups
        self.local_dw = nn.Conv2d(local, local, 3, padding=1, groups=local, **dd)
        self.local_pw = nn.Conv2d(local, local, 1, **dd)
        dilations = [1, sr_ratio][: len(self.groups) - 1]
        self.window_kv = nn.ModuleList(
            [
                _WindowGroupKeyValues(width, num_heads, window, dilation, qkv_bias, **dd)
                for width, dilation in zip(self.groups[1:], dilations)
            ]
        )
        self.proj = nn.Conv2d(dim, dim, 1, **dd)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        queries = self.query(x).flatten(2).transpose(1, 2).split(self.groups, dim=-1)
        inputs = x.split([self.groups[0], x.shape[1] - self.groups[0]], dim=1)

        key, value = self.global_kv(inputs[0])
        outputs = [_attend(queries[0].unsqueeze(1), key, value).squeeze(1)]
        local = self.local_pw(self.local_dw(inputs[1])).split(self.groups[1:], dim=1)
        for i, group in enumerate(self.window_kv):
            key, value = group(local[i])
            query = (
                queries[i + 1].reshape(batch, -1, self.num_heads, group.head_dim).transpose(1, 2)
            )
            out = _attend(query, key, value)  # (B, heads, N, head_dim)
            outputs.append(out.transpose(1, 2).flatten(2))
        out = torch.cat(outputs, dim=-1).transpose(1, 2).reshape(batch, -1, height, width)
        return self.proj(out)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (fan_out // module.groups)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@register_token_mixer("fasa")
def fasa_token_mixer(dim: int, sr_ratio: int = 2, head_dim: int = 32) -> FactorizationSelfAttention:
    """FaSA for the operator grid: both dilated-window groups, about `head_dim` channels a head."""
    window_width = fasa_channel_groups(dim, sr_ratio)[1]
    return FactorizationSelfAttention(
        dim, num_heads=math.gcd(max(dim // head_dim, 1), window_width), sr_ratio=sr_ratio
    )
