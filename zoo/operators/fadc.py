"""Frequency-Adaptive Dilated Convolution (FADC): AdaDR, AdaKern and FreqSelect.

`Frequency-Adaptive Dilated Convolution for Semantic Segmentation`
    Chen et al., CVPR 2024, arXiv 2403.05369, https://github.com/Linwei-Chen/FADC

A dilated convolution trades bandwidth for receptive field with one global rate. FADC picks the
rate per pixel from the local frequency content and adds two plug-ins:

- AdaDR (adaptive dilation rate): a k x k conv predicts a rate map r(p) >= 0 and the kernel taps
  are sampled at (1 + r(p)) * (i, j) around p, a modulated deformable convolution whose offsets
  all lie on one dilated grid. `dilation` only sets the initial rate (r = d - 1 + eps).
- AdaKern (adaptive kernel): the kernel is split into its low-frequency part (the mean over the
  k x k taps) and the high-frequency rest, and each part is rescaled per sample by channel
  attention over input and output channels (global pool -> 1x1 -> BN -> ReLU -> 1x1 -> 2 sigmoid).
- FreqSelect (frequency selection): the input is split into frequency bands by centred square
  low-pass masks on its FFT (cut at 1/2, 1/4, 1/8 of the spectrum) and every high band is
  reweighted per pixel (2 sigmoid of a 3x3 conv, zero-initialised so it starts as identity).

As in the official code, the input is replicate-padded by k // 2 before the convolution and the
taps that fall beyond that border read zeros. The official code runs mmcv's modulated deformable
convolution; this one runs torchvision.ops.deform_conv2d (same offset layout, with a mask).

AdaKern's kernels differ per sample, but only by per-channel scales, so the convolution never
builds them: an input-channel scale is applied to the input before sampling (bilinear sampling
and the tap gates are linear per channel), an output-channel scale to the output, and the
low-frequency part, constant over the k x k taps, is a 1x1 conv of the gated tap sum. This is
the same function as the per-sample kernels of the official code (`AdaptiveKernel.forward`,
tested), without their (B, out, in, k, k) tensors, whose building took 40% of a 32 px
training step of ResNet-50-FADC.

Layout: NCHW.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn
from torchvision.ops import deform_conv2d

from .registry import register_token_mixer

__all__ = [
    "AdaptiveDilationRate",
    "AdaptiveKernel",
    "FrequencyAdaptiveDilatedConv",
    "FrequencySelection",
    "KernelAttention",
    "low_pass_mask",
    "split_frequencies",
]


def _central_band(size: int, divisor: int, device: torch.device) -> torch.Tensor:
    """(size,) bool: the central 1/divisor of an fftshift-ed frequency axis."""
    # rounds half up where the official code uses Python's round (they differ on ties only)
    low = int(math.floor(size / 2 - size / (2 * divisor) + 0.5))
    high = int(math.floor(size / 2 + size / (2 * divisor) + 0.5))
    index = torch.arange(size, device=device)
    return (index >= low) & (index < high)


def low_pass_mask(height: int, width: int, divisor: int, device: torch.device) -> torch.Tensor:
    """(H, W) float mask keeping the central 1/divisor of the fftshift-ed spectrum per axis."""
    rows = _central_band(height, divisor, device)
    cols = _central_band(width, divisor, device)
    return (rows[:, None] & cols[None, :]).float()


class FrequencySelection(nn.Module):
    """FreqSelect: split `x` into FFT bands and reweight the high bands pixel by pixel.

    Args:
        channels: Input channels.
        band_divisors: Low-pass cut-offs, as fractions 1/divisor of the (centred) spectrum, from
            the widest band down; each band is the difference of two successive low-passes.
        spatial_kernel: Kernel of the convs that predict the per-pixel band weights.
        spatial_groups: Channel groups sharing one weight map (1: one map for all channels).
        reweight_lowest: Also reweight the remaining lowest band (the official default is no).
    """

    def __init__(
        self,
        channels: int,
        band_divisors: tuple[int, ...] = (2, 4, 8),
        spatial_kernel: int = 3,
        spatial_groups: int = 1,
        reweight_lowest: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.band_divisors = list(band_divisors)
        self.spatial_groups = spatial_groups
        num_weights = len(band_divisors) + int(reweight_lowest)
        self.band_weights = nn.ModuleList(
            [
                nn.Conv2d(
                    channels,
                    spatial_groups,
                    spatial_kernel,
                    padding=spatial_kernel // 2,
                    groups=spatial_groups,
                    **dd,
                )
                for _ in range(num_weights)
            ]
        )
        self.reweight_lowest = reweight_lowest
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # zero weights give 2 * sigmoid(0) = 1 for every band: the module starts as identity
        for conv in self.band_weights:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _reweight(self, logits: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """band * 2 sigmoid(logits), one (B, groups, H, W) weight map per channel group."""
        batch, channels, height, width = band.shape
        weight = 2 * torch.sigmoid(logits)
        band = band.view(batch, self.spatial_groups, -1, height, width)
        return (weight.unsqueeze(2) * band).view(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # half precision FFTs need power-of-two sizes: run those in float32
        half = x.dtype == torch.float16 or x.dtype == torch.bfloat16
        signal = x.float() if half else x
        spectrum = torch.fft.fftshift(torch.fft.fft2(signal, norm="ortho"), dim=(-2, -1))
        remainder = signal
        out = torch.zeros_like(signal)
        for index, conv in enumerate(self.band_weights):
            if index < len(self.band_divisors):
                mask = low_pass_mask(height, width, self.band_divisors[index], x.device)
                shifted_back = torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))
                low = torch.fft.ifft2(shifted_back, norm="ortho").real
                out = out + self._reweight(conv(x), remainder - low)
                remainder = low
            else:
                out = out + self._reweight(conv(x), remainder)
        if not self.reweight_lowest:
            out = out + remainder
        return out.to(x.dtype)


class KernelAttention(nn.Module):
    """One AdaKern attention: per-sample scales in (0, 2) for the input and output channels.

    global average pool -> 1x1 conv -> BN -> ReLU -> 1x1 conv -> 2 sigmoid, one head per side.
    `per_output=False` drops the output-channel head (the official choice for depthwise convs,
    where input and output channels coincide).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        per_output: bool = True,
        reduction: float = 1 / 16,
        min_hidden: int = 16,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        hidden = max(int(in_chs * reduction), min_hidden)
        self.fc = nn.Conv2d(in_chs, hidden, 1, bias=False, **dd)
        self.bn = nn.BatchNorm2d(hidden, **dd)
        self.act = nn.ReLU(inplace=True)
        self.in_fc = nn.Conv2d(hidden, in_chs, 1, **dd)
        self.out_fc = nn.Conv2d(hidden, out_chs, 1, **dd) if per_output else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.fc, self.in_fc, self.out_fc):
            if conv is not None:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        self.bn.reset_parameters()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (B, in_chs) scales and (B, out_chs) scales or None."""
        hidden = self.fc(x.mean((2, 3), keepdim=True))
        if self.training and hidden.shape[0] == 1:
            # one pooled vector has no batch statistics (the official code raises here): use the
            # running ones, so that batch-1 training steps run
            bn = self.bn
            hidden = F.batch_norm(
                hidden, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
            )
        else:
            hidden = self.bn(hidden)
        hidden = self.act(hidden)
        in_scale = 2 * torch.sigmoid(self.in_fc(hidden).flatten(1))
        out_scale = None
        if self.out_fc is not None:
            out_scale = 2 * torch.sigmoid(self.out_fc(hidden).flatten(1))
        return in_scale, out_scale


def split_frequencies(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high): the mean of each k x k kernel, (..., 1, 1), and the rest, (..., k, k)."""
    low = weight.mean((-2, -1), keepdim=True)
    return low, weight - low


class AdaptiveKernel(nn.Module):
    """AdaKern: W_b = low(W) * a_low(x_b) + high(W) * a_high(x_b), per sample b.

    low(W) is the mean of each k x k kernel (its DC part), high(W) = W - low(W); each attention
    scales a kernel by the product of its input- and output-channel scales.
    """

    def __init__(self, in_chs: int, out_chs: int, groups: int = 1, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        per_output = not (groups == in_chs == out_chs)
        self.in_chs, self.out_chs, self.groups = in_chs, out_chs, groups
        self.low = KernelAttention(in_chs, out_chs, per_output, **dd)
        self.high = KernelAttention(in_chs, out_chs, per_output, **dd)

    def _kernel_scale(self, in_scale: torch.Tensor, out_scale: torch.Tensor | None):
        """(B, out_chs, in_chs // groups, 1, 1): the scale of every kernel of the grouped conv."""
        batch, groups = in_scale.shape[0], self.groups
        in_per_group, out_per_group = self.in_chs // groups, self.out_chs // groups
        scale = in_scale.view(batch, groups, 1, in_per_group)
        scale = scale.expand(batch, groups, out_per_group, in_per_group)
        scale = scale.reshape(batch, self.out_chs, in_per_group)
        if out_scale is not None:
            scale = scale * out_scale.view(batch, self.out_chs, 1)
        return scale[..., None, None]

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels (B, out_chs, in_chs // groups, k, k) for the batch `x`.

        The definition, for inspection and tests: FADC applies the same scales without
        building these kernels.
        """
        low, high = split_frequencies(weight)
        low_in, low_out = self.low(x)
        high_in, high_out = self.high(x)
        low_scale = self._kernel_scale(low_in, low_out)
        high_scale = self._kernel_scale(high_in, high_out)
        return low.unsqueeze(0) * low_scale + high.unsqueeze(0) * high_scale


class AdaptiveDilationRate(nn.Module):
    """AdaDR: the extra dilation r(p) = |conv(x)(p)| * d >= 0 of every output pixel.

    The taps of the k x k kernel are then read at (1 + r(p)) * (i, j). The predicting conv starts
    at zero weights and bias (d - 1) / d + eps, i.e. at the dilation d everywhere.
    """

    def __init__(
        self,
        in_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        deform_groups: int = 1,
        epsilon: float = 1e-4,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.dilation, self.epsilon = dilation, epsilon
        # reads the input already padded by k // 2, so no padding of its own
        self.conv = nn.Conv2d(
            in_chs, deform_groups, kernel_size, stride=stride, device=device, dtype=dtype
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, (self.dilation - 1) / self.dilation + self.epsilon)

    def forward(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, deform_groups, H_out, W_out) extra dilation for the padded input."""
        return self.conv(padded).abs() * self.dilation


@register_notrace_module  # data-dependent sampling: a leaf for FX feature extraction
class FrequencyAdaptiveDilatedConv(nn.Module):
    """FADC, a drop-in for a k x k nn.Conv2d (odd k) with 'same' padding.

    Args:
        in_channels, out_channels, kernel_size, stride, groups, bias: As nn.Conv2d.
        padding: As nn.Conv2d, but it must be `dilation * (kernel_size // 2)` (or None): FADC
            always keeps the size, as a 'same' dilated conv does.
        dilation: The initial dilation rate (the predicted rate starts there).
        padding_mode: 'replicate' (official) or 'zeros', for the k // 2 border.
        deform_groups: Input-channel groups with their own rate map and modulation.
        band_divisors: FreqSelect's low-pass cut-offs (empty: no FreqSelect).
        epsilon: Added to the initial rate, so that |.| has a gradient at the start.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: Literal["replicate", "zeros"] = "replicate",
        deform_groups: int = 1,
        band_divisors: tuple[int, ...] = (2, 4, 8),
        epsilon: float = 1e-4,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if kernel_size % 2 == 0:
            raise ValueError(f"FADC needs an odd kernel_size, got {kernel_size}")
        if padding is not None and padding != dilation * (kernel_size // 2):
            raise ValueError(
                f"FADC keeps the size: padding must be dilation * (kernel_size // 2) = "
                f"{dilation * (kernel_size // 2)}, got {padding}"
            )
        if padding_mode not in ("replicate", "zeros"):
            raise ValueError(f"padding_mode must be 'replicate' or 'zeros', got {padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.groups, self.deform_groups = groups, deform_groups
        self.padding_mode = "replicate" if padding_mode == "replicate" else "constant"

        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size, **dd)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **dd)) if bias else None
        self.freq_select = (
            FrequencySelection(in_channels, band_divisors, **dd) if band_divisors else None
        )
        self.adaptive_kernel = AdaptiveKernel(in_channels, out_channels, groups, **dd)
        self.adaptive_dilation = AdaptiveDilationRate(
            in_channels, kernel_size, stride, dilation, deform_groups, epsilon, **dd
        )
        # the modulation of the deformable conv: one gate per tap, pixel and deform group
        self.modulation = nn.Conv2d(
            in_channels, deform_groups * kernel_size**2, kernel_size, stride=stride, **dd
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation (mmcv's for the kernel), usable on the meta device."""
        bound = 1 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.freq_select is not None:
            self.freq_select.reset_parameters()
        self.adaptive_kernel.low.reset_parameters()
        self.adaptive_kernel.high.reset_parameters()
        self.adaptive_dilation.reset_parameters()
        # zero modulation logits: every tap gated by sigmoid(0) = 1/2 at the start
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size // 2
        return F.pad(x, (pad, pad, pad, pad), mode=self.padding_mode)

    def _sampling_offsets(self, rate: torch.Tensor) -> torch.Tensor:
        """(B, groups * 2 k^2, H, W) offsets moving tap (i, j) to (1 + rate) * (i, j)."""
        batch, groups, height, width = rate.shape
        k = self.kernel_size
        steps = torch.arange(k, device=rate.device, dtype=rate.dtype) - k // 2
        # (dy, dx) per tap, row-major: the layout of deform_conv2d's offsets
        taps = torch.stack((steps.repeat_interleave(k), steps.repeat(k)), dim=1).flatten()
        offsets = rate.unsqueeze(2) * taps.view(1, 1, -1, 1, 1)
        return offsets.reshape(batch, groups * 2 * k * k, height, width)

    def dilation_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, deform_groups, H_out, W_out): the dilation rate FADC uses at every output pixel."""
        if self.freq_select is not None:
            x = self.freq_select(x)
        return 1 + self.adaptive_dilation(self._pad(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freq_select is not None:
            x = self.freq_select(x)
        padded = self._pad(x)
        offsets = self._sampling_offsets(self.adaptive_dilation(padded))
        mask = torch.sigmoid(self.modulation(padded))
        low_in, low_out = self.adaptive_kernel.low(x)
        high_in, high_out = self.adaptive_kernel.high(x)
        low, high = split_frequencies(self.weight)
        stride = (self.stride, self.stride)
        # high part: the input-channel scales move before the (linear) sampling
        out = deform_conv2d(
            padded * high_in[..., None, None], offsets, high, stride=stride, mask=mask
        )
        if high_out is not None:
            out = out * high_out[..., None, None]
        # low part: one weight for all taps, so a 1x1 conv of the gated sum of the taps
        # (a depthwise deformable conv with an all-ones kernel)
        ones = padded.new_ones(self.in_channels, 1, self.kernel_size, self.kernel_size)
        tap_sum = deform_conv2d(padded, offsets, ones, stride=stride, mask=mask)
        low_part = F.conv2d(tap_sum * low_in[..., None, None], low, groups=self.groups)
        if low_out is not None:
            low_part = low_part * low_out[..., None, None]
        out = out + low_part
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias is not None}, deform_groups={self.deform_groups}"
        )


@register_token_mixer("fadc")
class FADCMixer(FrequencyAdaptiveDilatedConv):
    """Token mixer: a depthwise 3x3 FADC."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__(dim, dim, kernel_size, dilation=dilation, groups=dim)
