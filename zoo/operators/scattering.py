"""SVT's spectral scattering mixer: a dual-tree complex wavelet transform with learnable mixing.

`Scattering Vision Transformer: Spectral Mixing Matters`
    Patro & Agneeswaran, NeurIPS 2023, arXiv 2311.01310, https://github.com/badripatro/svt

The mixer takes a level-1 dual-tree complex wavelet transform (DTCWT) of each channel: one real
low-pass map at full resolution and six complex high-pass maps (orientations 15, 45, 75, 105,
135 and 165 degrees) at half resolution. The low-pass map is multiplied by a learnable weight per
channel and position ("tensor blending"); the high-pass coefficients go through a two-layer
complex MLP over channels, block-diagonal and written as Einstein sums ("Einstein blending"),
shared by all orientations and positions. The inverse DTCWT brings the result back to pixels.
Because the transform is invertible, nothing is lost by the down-sampling of the high-pass part.

The high-frequency mixing here is over channels, as in the blocks of the official model that the
paper's parameter counts describe; the official file also holds a token-mixing variant whose
weights are sized for one resolution (a matrix per row of the 28x28 grid), which could not follow
the zoo's rule that a mixer take any H, W.

Why our own DTCWT rather than `pytorch-wavelets` (PyPI 1.3.0, what the official code uses):
that release dates from 2020 and is unmaintained; its transforms are `torch.autograd.Function`s
that torch.fx cannot trace and TorchScript cannot compile, it casts to float32 (so a bfloat16 model
would not stay bfloat16), and it would pull PyWavelets in as well. At level 1 the DTCWT needs only
Kingsbury's near-symmetric (13, 19)-tap biorthogonal pair ("near_sym_b") and a regrouping of each
2x2 quad of the real sub-bands into two complex orientations: a few separable depthwise
convolutions, written below, with the same conventions (symmetric extension, orientation order,
1/sqrt(2) quad scaling) so that the two agree to float precision. The q-shift filters of
pytorch-wavelets are only used at levels 2 and above, which SVT does not use.

Layout: NCHW in and out.
"""

import math

import torch
import torch.nn.functional as F
from timm.models import register_notrace_module
from torch import nn

from .registry import register_token_mixer

__all__ = ["DTCWT2d", "ScatterMixer"]

# Kingsbury's near_sym_b level-1 filters (exact rationals). The two high-pass filters follow from
# the low-pass ones by alternating signs: h1[n] = (-1)^(n+1) g0[n], g1[n] = (-1)^n h0[n].
_H0 = tuple(v / 5120 for v in (-9, 0, 114, -240, -247, 1520, 2844, 1520, -247, -240, 114, 0, -9))
_G0 = tuple(
    v / 1146880
    for v in (
        81, 0, -1539, -2160, 8208, 27360, -63816, -59280, 343786, 641600,
        343786, -59280, -63816, 27360, 8208, -2160, -1539, 0, 81,
    )
)  # fmt: skip
_TAPS = len(_G0)  # every filter is zero-padded to this centred length so one conv applies two


def _centred(taps: tuple[float, ...]) -> list[float]:
    pad = (_TAPS - len(taps)) // 2
    return [0.0] * pad + list(taps) + [0.0] * pad


def _filter_bank() -> list[list[float]]:
    """Rows: analysis low, analysis high, synthesis low, synthesis high (all centred, 19 taps)."""
    h1 = [(-1) ** (n + 1) * g for n, g in enumerate(_G0)]
    g1 = [(-1) ** n * h for n, h in enumerate(_H0)]
    return [_centred(_H0), h1, list(_G0), _centred(tuple(g1))]


def _symmetric_pad(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric extension (edge sample repeated) along `dim`, for any size >= 1."""
    size = x.shape[dim]
    index = torch.arange(-pad, size + pad, device=x.device).remainder(2 * size)
    index = torch.where(index >= size, 2 * size - 1 - index, index)
    return x.index_select(dim, index)


def _filter_rows(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Depthwise-grouped FIR filtering along the width; `weight` is (out, in/groups, taps)."""
    x = _symmetric_pad(x, weight.shape[-1] // 2, dim=3)
    return F.conv2d(x, weight.unsqueeze(2), groups=groups)


def _filter_cols(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """As `_filter_rows`, along the height."""
    x = _symmetric_pad(x, weight.shape[-1] // 2, dim=2)
    return F.conv2d(x, weight.unsqueeze(3), groups=groups)


class DTCWT2d(nn.Module):
    """Level-1 2D dual-tree complex wavelet transform (near_sym_b filters) and its inverse.

    `forward(x)` with x of shape (B, C, H, W), H and W even, returns `(low, real, imag)`: the
    low-pass map (B, C, H, W) and the real and imaginary parts (B, C, 6, H/2, W/2) of the six
    oriented high-pass bands, ordered 15, 45, 75, 105, 135, 165 degrees. `inverse` undoes it.
    """

    def __init__(self, device=None, dtype=None):
        super().__init__()
        # fixed filters, rebuilt rather than stored: not part of a checkpoint
        filters = torch.empty(4, _TAPS, device=device, dtype=dtype)
        self.register_buffer("filters", filters, persistent=False)
        self.init_non_persistent_buffers()

    def init_non_persistent_buffers(self) -> None:
        """(Re)build the filter bank, e.g. after materialising a model built on the meta device."""
        bank = torch.tensor(_filter_bank(), device=self.filters.device, dtype=self.filters.dtype)
        with torch.no_grad():
            self.filters.copy_(bank)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, channels, height, width = x.shape
        analysis = self.filters[:2].unsqueeze(1)  # (2, 1, taps): low, high
        y = _filter_rows(x.reshape(batch * channels, 1, height, width), analysis, groups=1)
        # each row band through both column filters: ll, lh, hl, hh (row filter first)
        y = _filter_cols(y, analysis.repeat(2, 1, 1), groups=2)
        low = y[:, 0].reshape(batch, channels, height, width)
        # 2x2 quads (a b / c d) of the lh, hl, hh bands -> two complex orientations each
        quads = F.pixel_unshuffle(y[:, 1:], 2).unflatten(1, (3, 4)) / math.sqrt(2)
        a, b, c, d = quads.unbind(2)
        real1, imag1, real2, imag2 = a - d, b + c, a + d, b - c
        # bands are (lh, hl, hh): lh -> 15/165, hh -> 45/135, hl -> 75/105 degrees
        real = torch.stack(
            (real1[:, 0], real1[:, 2], real1[:, 1], real2[:, 1], real2[:, 2], real2[:, 0]), 1
        )
        imag = torch.stack(
            (imag1[:, 0], imag1[:, 2], imag1[:, 1], imag2[:, 1], imag2[:, 2], imag2[:, 0]), 1
        )
        shape = (batch, channels, 6, height // 2, width // 2)
        return low, real.reshape(shape), imag.reshape(shape)

    def inverse(self, low: torch.Tensor, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = low.shape
        real, imag = real.flatten(0, 1), imag.flatten(0, 1)
        # back to (lh, hl, hh) pairs of orientations: (15, 165), (75, 105), (45, 135)
        real1 = torch.stack((real[:, 0], real[:, 2], real[:, 1]), 1)
        imag1 = torch.stack((imag[:, 0], imag[:, 2], imag[:, 1]), 1)
        real2 = torch.stack((real[:, 5], real[:, 3], real[:, 4]), 1)
        imag2 = torch.stack((imag[:, 5], imag[:, 3], imag[:, 4]), 1)
        quads = torch.stack((real1 + real2, imag1 + imag2, imag1 - imag2, real2 - real1), 2)
        bands = F.pixel_shuffle(quads.flatten(1, 2) / math.sqrt(2), 2)
        y = torch.cat((low.reshape(batch * channels, 1, height, width), bands), 1)
        synthesis = self.filters[2:]  # (2, taps): low, high
        # columns: lo = g0*ll + g1*lh, hi = g0*hl + g1*hh; then rows: g0*lo + g1*hi
        y = _filter_cols(y, synthesis.unsqueeze(0).repeat(2, 1, 1), groups=2)
        y = _filter_rows(y, synthesis.unsqueeze(0), groups=1)
        return y.reshape(batch, channels, height, width)


# a leaf for torch.fx: its padding and weight resampling depend on the input size
@register_notrace_module
class ScatterMixer(nn.Module):
    """SVT's scattering token mixer: DTCWT, tensor blending (low) and Einstein blending (high).

    Args:
        dim: Channels in and out.
        size: Grid of the low-pass weight; resampled bilinearly when the input differs (SVT-H
            sizes it for the 224 input: 56x56 in its first stage).
        num_blocks: Diagonal blocks of the complex channel-mixing weights (dim must divide).
    """

    def __init__(
        self,
        dim: int,
        size: tuple[int, int] = (14, 14),
        num_blocks: int = 4,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if dim % num_blocks:
            raise ValueError(f"dim {dim} is not divisible by num_blocks {num_blocks}")
        dd = {"device": device, "dtype": dtype}
        block = dim // num_blocks
        self.num_blocks = num_blocks
        self.transform = DTCWT2d(**dd)
        self.low_weight = nn.Parameter(torch.empty(dim, *size, **dd))
        # two complex layers: (layer, real/imaginary, block, in, out) and (layer, re/im, block, out)
        self.high_weight = nn.Parameter(torch.empty(2, 2, num_blocks, block, block, **dd))
        self.high_bias = nn.Parameter(torch.empty(2, 2, num_blocks, block, **dd))
        for param in (self.low_weight, self.high_weight, self.high_bias):
            nn.init.normal_(param, std=0.02)

    def _low_weight_for(self, height: int, width: int) -> torch.Tensor:
        weight = self.low_weight
        if weight.shape[1] != height or weight.shape[2] != width:
            weight = F.interpolate(
                weight.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=True
            ).squeeze(0)
        return weight

    def _complex_linear(
        self, real: torch.Tensor, imag: torch.Tensor, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(a + ib)(W_r + iW_i) + (b_r + ib_i), one block-diagonal matrix per channel block."""
        w_real, w_imag = self.high_weight[layer, 0], self.high_weight[layer, 1]
        bias = self.high_bias[layer].unflatten(-1, (-1, 1, 1, 1))  # over (block, 6, h, w)
        out_real = torch.einsum("bnd...,ndk->bnk...", real, w_real)
        out_real = out_real - torch.einsum("bnd...,ndk->bnk...", imag, w_imag)
        out_imag = torch.einsum("bnd...,ndk->bnk...", real, w_imag)
        out_imag = out_imag + torch.einsum("bnd...,ndk->bnk...", imag, w_real)
        return out_real + bias[0], out_imag + bias[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        # the quads of the DTCWT need even sizes: repeat the last row / column, crop at the end
        if height % 2:
            x = torch.cat((x, x[:, :, -1:]), dim=2)
        if width % 2:
            x = torch.cat((x, x[:, :, :, -1:]), dim=3)
        low, real, imag = self.transform(x)
        low = low * self._low_weight_for(low.shape[-2], low.shape[-1])
        # channels split into blocks: (B, C, 6, h, w) -> (B, blocks, C / blocks, 6, h, w)
        real, imag = (
            real.unflatten(1, (self.num_blocks, -1)),
            imag.unflatten(1, (self.num_blocks, -1)),
        )
        real, imag = self._complex_linear(real, imag, 0)
        real, imag = self._complex_linear(F.relu(real), F.relu(imag), 1)
        y = self.transform.inverse(low, real.flatten(1, 2), imag.flatten(1, 2))
        return y[:, :, :height, :width]


register_token_mixer("svt_scatter")(ScatterMixer)
