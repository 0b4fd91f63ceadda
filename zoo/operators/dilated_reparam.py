"""The Dilated Reparam Block: a large depthwise kernel trained beside dilated small kernels.

`UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition`
    Ding et al., CVPR 2024, arXiv 2311.15599, https://github.com/AILab-CVC/UniRepLKNet
(extended as `Scaling Up Your Kernels: Large Kernel Design in ConvNets towards Universal
Representations`, the same repository).

During training, a k x k depthwise conv runs in parallel with a few depthwise convs that have
small kernels and dilations, each branch followed by its own BatchNorm, and the branch outputs
are summed. A dilated k' x k' kernel with dilation r is a (r(k' - 1) + 1)-sized dense kernel
with zeros between its taps, and every BatchNorm in eval mode is an affine map per channel, so
the whole block folds into ONE k x k depthwise conv with a bias (`reparameterize()`): the
inference-time network keeps the large kernel's cost and none of the branches.

The branch kernel sizes and dilations per large kernel size are the official repository's
defaults (it notes they were not tuned carefully).

Layout: NCHW in and out.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_token_mixer

__all__ = ["DILATED_BRANCHES", "DilatedReparamConv", "fuse_conv_bn"]

# large kernel size -> (kernel size, dilation) of each parallel dilated branch
DILATED_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    5: ((3, 1), (3, 2)),
    7: ((5, 1), (3, 2), (3, 3)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
}


def fuse_conv_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel and bias of `bn(conv(x))` as one conv, with `bn` in eval mode (or Identity).

    Args:
        weight: Conv kernel, (out, in / groups, kh, kw).
        bias: Conv bias (out,), or None.
        bn: A BatchNorm2d over the conv's output, or nn.Identity for none.

    Returns:
        The fused (kernel, bias).
    """
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    if isinstance(bn, nn.Identity):
        return weight, bias
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return weight * scale.view(-1, 1, 1, 1), bn.bias + (bias - bn.running_mean) * scale


def _dilate_kernel(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """The dense kernel of a dilated conv: the taps spread `dilation` apart, zeros between."""
    if dilation == 1:
        return kernel
    out, in_per_group, kh, kw = kernel.shape
    dense = kernel.new_zeros(out, in_per_group, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    dense[:, :, ::dilation, ::dilation] = kernel
    return dense


def _pad_to(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a centred odd-sized kernel to `size` x `size`."""
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, [pad] * 4)


@register_token_mixer("dilated_reparam")
class DilatedReparamConv(nn.Module):
    """Depthwise k x k conv + BN, plus parallel dilated depthwise conv + BN branches, summed.

    Args:
        dim: Input and output channels.
        kernel_size: The large kernel's size, one of `DILATED_BRANCHES` (5 to 17, odd).
    """

    def __init__(self, dim: int, kernel_size: int = 13, device=None, dtype=None):
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(
                f"the Dilated Reparam Block has branch settings for kernel sizes "
                f"{sorted(DILATED_BRANCHES)}, got {kernel_size}"
            )
        dd = {"device": device, "dtype": dtype}
        self.kernel_size = kernel_size
        self.dilations = [dilation for _, dilation in DILATED_BRANCHES[kernel_size]]
        self.lk = nn.Conv2d(
            dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=False, **dd
        )
        self.lk_bn = nn.BatchNorm2d(dim, **dd)
        self.branches = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(
                        dim,
                        dim,
                        k,
                        padding=r * (k - 1) // 2,
                        dilation=r,
                        groups=dim,
                        bias=False,
                        **dd,
                    ),
                    bn=nn.BatchNorm2d(dim, **dd),
                )
            )
            for k, r in DILATED_BRANCHES[kernel_size]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lk_bn(self.lk(x))
        for branch in self.branches:
            out = out + branch(x)
        return out

    @torch.no_grad()
    def merged_conv(self) -> nn.Conv2d:
        """One depthwise k x k conv with bias equal to this block in eval mode."""
        weight, bias = fuse_conv_bn(self.lk.weight, self.lk.bias, self.lk_bn)
        for branch, dilation in zip(self.branches, self.dilations):
            branch_weight, branch_bias = fuse_conv_bn(branch.conv.weight, None, branch.bn)
            weight = weight + _pad_to(_dilate_kernel(branch_weight, dilation), self.kernel_size)
            bias = bias + branch_bias
        dim = weight.shape[0]
        conv = nn.Conv2d(
            dim,
            dim,
            self.kernel_size,
            padding=self.kernel_size // 2,
            groups=dim,
            bias=True,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv

    def reparameterize(self) -> None:
        """Fold the branches and BatchNorms into the large kernel, in place (for inference).

        Uses the BatchNorms' running statistics, so call it on a trained model; calling it again
        changes nothing.
        """
        if not self.branches and isinstance(self.lk_bn, nn.Identity):
            return
        self.lk = self.merged_conv()
        self.lk_bn = nn.Identity()
        self.branches = nn.ModuleList()
