"""Scale-Equalizing Pyramid Convolution (SEPC), a detection neck over an FPN's outputs.

Wang et al., `Scale-Equalizing Pyramid Convolution for Object Detection`, CVPR 2020,
arXiv 2005.03101 (official code: https://github.com/jshilong/SEPC).

A pyramid convolution (PConv) is a 3-D convolution across scale and space: output level l sums
a 3x3 convolution of level l, a stride-2 3x3 convolution of the finer level l-1 and a 3x3
convolution of the coarser level l+1 upsampled to level l, each kernel shared by all levels.
Integrated batch normalisation (iBN) then normalises all levels together, with statistics
gathered over the whole pyramid. Scale equalisation: from the second level up, the kernels are
deformable (offsets from a zero-initialised convolution of the same shape), so the shared
kernel can stretch with the feature scale; the finest level keeps a regular kernel. The paper
stacks four PConvs; init is N(0, 0.01) with zero bias, as in the official code.

The official neck also adds one shared classification and one localisation convolution; here
torchvision's detection heads keep their own towers and take that role.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d


class IntegratedBatchNorm(nn.Module):
    """BatchNorm whose statistics are gathered over every level of a pyramid at once."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        n, c = levels[0].shape[:2]
        flat = torch.cat([x.reshape(n, c, 1, -1) for x in levels], dim=-1)
        normed = self.norm(flat).split([x.shape[-2] * x.shape[-1] for x in levels], dim=-1)
        return [y.reshape(x.shape) for y, x in zip(normed, levels)]


class ScaleEqualizingConv(nn.Module):
    """A 3x3 kernel shared by all levels; deformable from level `start_level` on when asked."""

    def __init__(self, channels: int, stride: int = 1, deformable: bool = True,
                 start_level: int = 1):  # fmt: skip
        super().__init__()
        self.stride, self.start_level = stride, start_level
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight, 0, 0.01)
        self.offset = nn.Conv2d(channels, 18, 3, stride=stride, padding=1) if deformable else None
        if self.offset is not None:
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)

    def forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """Convolve `x` for output level `level`."""
        if self.offset is None or level < self.start_level:
            return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=1)
        return deform_conv2d(x, self.offset(x), self.weight, self.bias, stride=self.stride,
                             padding=1)  # fmt: skip


class PyramidConv(nn.Module):
    """One PConv: each level sums its own, its finer and its coarser neighbour's convolutions."""

    def __init__(self, channels: int, deformable: bool = True, integrated_bn: bool = True):
        super().__init__()
        self.same = ScaleEqualizingConv(channels, 1, deformable)
        self.from_finer = ScaleEqualizingConv(channels, 2, deformable)
        self.from_coarser = ScaleEqualizingConv(channels, 1, deformable)
        self.norm = IntegratedBatchNorm(channels) if integrated_bn else None

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(levels):
            y = self.same(i, x)
            if i > 0:
                y = y + _fit(self.from_finer(i, levels[i - 1]), y.shape[-2:])
            if i < len(levels) - 1:
                coarser = self.from_coarser(i, levels[i + 1])
                y = y + F.interpolate(coarser, size=y.shape[-2:], mode="bilinear",
                                      align_corners=False)  # fmt: skip
            out.append(y)
        if self.norm is not None:
            out = self.norm(out)
        return [F.relu(y) for y in out]


def _fit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A stride-2 map of the finer level, matched to this level's size (odd sides differ by 1)."""
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="nearest")


class SEPC(nn.Module):
    """A stack of pyramid convolutions over equal-width pyramid levels (finest first).

    Args:
        channels: Width of every level (the FPN's).
        num_pconvs: Stacked pyramid convolutions (the paper: 4).
        deformable: Scale-equalizing deformable kernels from the second level up (SEPC);
            False gives the lighter plain PConv ("SEPC-lite" in the official configs).
        integrated_bn: Integrated batch normalisation after each PConv.
    """

    def __init__(self, channels: int, num_pconvs: int = 4, deformable: bool = True,
                 integrated_bn: bool = True):  # fmt: skip
        super().__init__()
        self.pconvs = nn.ModuleList(
            PyramidConv(channels, deformable, integrated_bn) for _ in range(num_pconvs)
        )

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        levels = list(levels)
        for pconv in self.pconvs:
            levels = pconv(levels)
        return levels
