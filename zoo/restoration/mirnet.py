"""MIRNet: parallel multi-resolution streams that exchange information, with dual attention.

`Learning Enriched Features for Real Image Restoration and Enhancement`
    Zamir et al., ECCV 2020, arXiv 2003.06792, https://github.com/swz30/MIRNet

A 3x3 head, recursive residual groups (RRG) of multi-scale residual blocks (MRB), a 3x3 tail and a
global residual. An MRB keeps three streams at full, 1/2 and 1/4 resolution (64, 128, 256
channels). Each stream runs dual attention units (DAU: two convolutions, then spatial and channel
attention in parallel, fused by a 1x1 convolution, with a residual); between the columns of DAUs
every stream gathers all streams, resampled to its own scale, with selective kernel feature fusion
(SKFF: softmax attention over the inputs, from their pooled sum); at the end every stream is
upsampled to full resolution and fused by SKFF again. Resampling is residual: anti-aliased
(blur-pool) downsampling or transposed-convolution upsampling, beside a plain resize + 1x1 branch.

Paper configuration (`mirnet`): 3 RRGs of 2 MRBs, 3 streams, 2 DAU columns, width 64. The
official code builds the columns of a stream from one repeated DAU module (`[DAU(...)] * width`),
so the columns share their weights; we do the same, which gives the released model's size:
31,799,730 parameters, the 31.8M that the MIRNet-v2 paper (arXiv 2205.01649) quotes for MIRNet
(separate column weights would make it 42.3M).
`mirnet_tiny` (width 16, one RRG of one MRB) is the same architecture at a size that trains on a
CPU.

For super-resolution the network runs on the bicubic upscale of the low-resolution image, as the
paper's RealSR experiments do. Inputs are padded to a multiple of 4 (the coarsest stream) and the
output is cropped back.
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from .pixels import bicubic_resize

__all__ = ["MIRNet"]


def _conv(in_chs: int, out_chs: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False)


class SpatialAttention(nn.Module):
    """Gate every position by a 5x5 convolution of the channel-wise max and mean."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = _conv(2, 1, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate of every channel."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            _conv(dim, dim // reduction, 1),
            nn.ReLU(),
            _conv(dim // reduction, dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class DualAttentionUnit(nn.Module):
    """Conv-PReLU-conv, spatial and channel attention in parallel, 1x1 fusion, residual."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        self.body = nn.Sequential(_conv(dim, dim, 3), nn.PReLU(), _conv(dim, dim, 3))
        self.spatial = SpatialAttention()
        self.channel = ChannelAttention(dim, reduction)
        self.fuse = _conv(2 * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + self.fuse(torch.cat([self.spatial(y), self.channel(y)], dim=1))


class SelectiveKernelFusion(nn.Module):
    """Fuse `branches` same-shape maps by softmax attention computed from their pooled sum."""

    def __init__(self, dim: int, branches: int, reduction: int = 8):
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.squeeze = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv(dim, hidden, 1), nn.PReLU())
        self.select = nn.ModuleList([_conv(hidden, dim, 1) for _ in range(branches)])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(features, dim=1)  # (B, branches, C, H, W)
        z = self.squeeze(stacked.sum(1))
        weights = torch.stack([select(z) for select in self.select], dim=1).softmax(dim=1)
        return (stacked * weights).sum(1)


@register_notrace_module  # its padding mode depends on the input's size: a leaf for torch.fx
class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: a fixed [1, 2, 1] binomial blur per channel."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", torch.outer(taps, taps) / 16, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel.expand(x.shape[1], 1, 3, 3)
        # reflection needs a side of at least 2; a 1-pixel map is replicated instead
        mode = "reflect" if x.shape[-2] > 1 and x.shape[-1] > 1 else "replicate"
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), kernel, stride=2, groups=x.shape[1])


class ResidualDownsample(nn.Module):
    """Halve the resolution and double the channels, with a residual plain branch."""

    def __init__(self, dim: int):
        super().__init__()
        self.top = nn.Sequential(
            _conv(dim, dim, 1),
            nn.PReLU(),
            _conv(dim, dim, 3),
            nn.PReLU(),
            BlurDownsample(),
            _conv(dim, 2 * dim, 1),
        )
        self.bottom = nn.Sequential(BlurDownsample(), _conv(dim, 2 * dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bottom(x)


class ResidualUpsample(nn.Module):
    """Double the resolution and halve the channels, with a residual bilinear branch."""

    def __init__(self, dim: int):
        super().__init__()
        self.top = nn.Sequential(
            _conv(dim, dim, 1),
            nn.PReLU(),
            nn.ConvTranspose2d(dim, dim, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.PReLU(),
            _conv(dim, dim // 2, 1),
        )
        self.bottom = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(dim, dim // 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bottom(x)


def resampler(dim: int, steps: int) -> nn.Sequential:
    """`steps` > 0 halvings (channels double each time) or `-steps` doublings of resolution."""
    if steps > 0:
        return nn.Sequential(*[ResidualDownsample(dim * 2**i) for i in range(steps)])
    return nn.Sequential(*[ResidualUpsample(dim // 2**i) for i in range(-steps)])


class MultiScaleResidualBlock(nn.Module):
    """Streams at scales 1, 1/2, 1/4 ... with DAU columns, SKFF exchange between them, a residual."""

    def __init__(self, dim: int, streams: int = 3, columns: int = 2):
        super().__init__()
        self.columns = columns
        widths = [dim * 2**s for s in range(streams)]
        # one DAU per stream, applied in every column (the official model's shared columns)
        self.units = nn.ModuleList([DualAttentionUnit(w) for w in widths])
        # resample[f"{k}to{j}"] maps stream k to the scale and width of stream j
        self.resample = nn.ModuleDict(
            {
                f"{k}to{j}": resampler(widths[k], j - k)
                for k in range(streams)
                for j in range(streams)
                if j != k
            }
        )
        self.exchange = nn.ModuleList([SelectiveKernelFusion(w, streams) for w in widths])
        self.to_full = nn.ModuleList([resampler(widths[k], -k) for k in range(1, streams)])
        self.fuse_full = SelectiveKernelFusion(dim, streams)
        self.conv_out = nn.Conv2d(dim, dim, 3, padding=1, bias=False)

    def _resample(self, x: torch.Tensor, src: int, dst: int) -> torch.Tensor:
        """Stream `src`'s map at the scale and width of stream `dst`."""
        # TorchScript indexes module containers with constants only: look the key up by name
        key = f"{src}to{dst}"
        for name, resample in self.resample.items():
            if name == key:
                return resample(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for j, unit in enumerate(self.units):
            outs.append(unit(x if j == 0 else self._resample(outs[-1], j - 1, j)))
        for _ in range(1, self.columns):
            gathered: list[torch.Tensor] = []
            for j, exchange in enumerate(self.exchange):
                gathered.append(exchange([self._resample(o, k, j) for k, o in enumerate(outs)]))
            outs = []
            for j, column_unit in enumerate(self.units):  # the same DAUs, the next column
                outs.append(column_unit(gathered[j]))
        full = [outs[0]]
        for k, up in enumerate(self.to_full):
            full.append(up(outs[k + 1]))
        return x + self.conv_out(self.fuse_full(full))


class RecursiveResidualGroup(nn.Module):
    """Multi-scale residual blocks, a 3x3 convolution, and a residual around them."""

    def __init__(self, dim: int, blocks: int, streams: int, columns: int):
        super().__init__()
        self.body = nn.Sequential(
            *[MultiScaleResidualBlock(dim, streams, columns) for _ in range(blocks)],
            _conv(dim, dim, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MIRNet(nn.Module):
    """Multi-scale residual network for image restoration.

    Args:
        in_chans: Image channels.
        scale: Upscaling factor; above 1 the input is first bicubic-upscaled.
        dim: Width of the full-resolution stream.
        groups: Recursive residual groups.
        blocks: Multi-scale residual blocks per group.
        streams: Parallel resolutions in each block.
        columns: DAU columns in each stream (with SKFF exchange between them).
        device: Where to build the parameters (`meta` for a shape-only model).
        dtype: Parameter dtype.
    """

    restoration_net = True

    def __init__(
        self,
        in_chans: int = 3,
        scale: int = 1,
        dim: int = 64,
        groups: int = 3,
        blocks: int = 2,
        streams: int = 3,
        columns: int = 2,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_chans, self.scale = in_chans, scale
        self.multiple = 2 ** (streams - 1)
        with torch.device(device) if device is not None else nullcontext():
            self.conv_in = _conv(in_chans, dim, 3)
            self.body = nn.Sequential(
                *[RecursiveResidualGroup(dim, blocks, streams, columns) for _ in range(groups)]
            )
            self.conv_out = _conv(dim, in_chans, 3)
        if dtype is not None:
            self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale > 1:
            x = bicubic_resize(x, float(self.scale))
        h, w = x.shape[-2], x.shape[-1]
        padded = F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple), mode="replicate")
        out = padded + self.conv_out(self.body(self.conv_in(padded)))
        return out[..., :h, :w]
