"""Depthwise deformable convolution with a bounded sampling range, for detection heads.

Dong, Wang, Huang et al., `Algorithm-hardware Co-design for Deformable Convolution` and Huang,
Wang, Dong et al., `CoDeNet: Efficient Deployment of Input-Adaptive Object Detection on
Embedded FPGAs` (FPGA 2021), arXiv 2006.08357 (official code: https://github.com/DequanWang/CoDeNet).
The papers' hardware-friendly deformable convolution: a 1x1 pointwise convolution, then a
depthwise 3x3 deformable convolution whose offsets come from a 1x1 convolution of the pointwise
output and are limited to a small range, so that every sample stays inside a fixed on-chip
window. The offsets start at zero: the layer starts as a depthwise-separable convolution.
The official code clamps the offsets to +-bound; here they are `max_offset * tanh(.)`, a
smooth bound whose gradient does not vanish abruptly at the limit. Sampling is torchvision's
`deform_conv2d`.
"""

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class BoundedDeformableConv2d(nn.Module):
    """Pointwise conv, then a depthwise 3x3 deformable conv with offsets in (-max_offset, max_offset).

    Args:
        in_channels: Input channels.
        out_channels: Output channels (the depthwise stage's groups).
        max_offset: Largest displacement of a sample, in pixels of the input map.
        bias: Bias of the depthwise stage.
    """

    kernel_size = 3

    def __init__(self, in_channels: int, out_channels: int, max_offset: float = 2.0,
                 bias: bool = True):  # fmt: skip
        super().__init__()
        self.max_offset = max_offset
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        # one (dy, dx) per kernel tap, shared across channels (one deformable group)
        self.offset = nn.Conv2d(out_channels, 2 * self.kernel_size**2, 1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.weight = nn.Parameter(torch.empty(out_channels, 1, self.kernel_size, self.kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """The bounded offsets (B, 18, H, W) of the pointwise output `x`."""
        return self.max_offset * torch.tanh(self.offset(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(x)
        return deform_conv2d(x, self.offsets(x), self.weight, self.bias, padding=1)


def deformable_towers(head: nn.Module, max_offset: float) -> int:
    """Replace every 3x3 convolution of a torchvision detection head's towers in place.

    The towers are `head.classification_head.conv` and `head.regression_head.conv` (FCOS and
    RetinaNet); the final predictors stay regular convolutions. Returns how many were replaced.
    """
    replaced = 0
    for branch in (head.classification_head, head.regression_head):
        for name, module in list(branch.conv.named_modules()):
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                parent_name, _, child = name.rpartition(".")
                parent = branch.conv.get_submodule(parent_name) if parent_name else branch.conv
                deformable = BoundedDeformableConv2d(
                    module.in_channels, module.out_channels, max_offset, module.bias is not None
                )
                setattr(parent, child, deformable)
                replaced += 1
    return replaced
