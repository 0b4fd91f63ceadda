"""CFSR's operators: the large-kernel ConvFormer mixer and the edge-preserving feed-forward network.

`Transforming Image Super-Resolution: A ConvFormer-based Efficient Approach`
    Wu et al., IEEE TIP 2024, arXiv 2401.05633, https://github.com/Aitical/CFSR

Layout NCHW. The ConvFormer layer replaces self-attention by a convolutional modulation: a
large-kernel depth-wise convolution of a 1x1 projection, gating a second 1x1 projection. Its
depth-wise kernel is re-parameterised: during training a small (3x3) depth-wise branch and three
fixed edge filters (Sobel-x, Sobel-y, Laplacian) with learned per-channel scales and biases run
beside the large kernel; all of them are linear and depth-wise, so they fold into the one large
kernel for inference (`reparameterize()`). The edge-preserving feed-forward network (EFN) puts the
same edge-aware 3x3 depth-wise convolution inside an inverted-bottleneck MLP.

Every branch is a depth-wise convolution of the same input, so the training-time module sums the
kernels and convolves once: the same numbers as running the branches one by one (a test checks
this), at the cost of one convolution. `LargeKernelConvMod` is registered as the token mixer
`cfsr` of the operator grid. Our own implementation of the paper's operators; facts (kernel 9,
small kernel 3, mlp ratio 2, the three edge filters) from the official repository.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_token_mixer

__all__ = ["EdgeConv3x3", "EdgePreservingFFN", "LargeKernelConvMod", "LargeKernelDWConv"]


def edge_filters(
    device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The three fixed 3x3 edge filters, shape (3, 3, 3): Sobel-x, Sobel-y, Laplacian.

    The textbook Sobel and 4-neighbour Laplacian filters, as the paper (and ECBSR, whose edge
    branches it reuses) defines them. Written inline so that TorchScript can compile it.
    """
    return torch.tensor(
        [
            [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],  # Sobel-x
            [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],  # Sobel-y
            [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],  # Laplacian
        ],
        device=device,
        dtype=dtype,
    )


class EdgeConv3x3(nn.Module):
    """Depth-wise 3x3 convolution plus scaled Sobel-x, Sobel-y and Laplacian filters.

    Each channel c computes `(w_c + sum_k s_kc * E_k) * x_c + b_c + sum_k t_kc`, where E_k are the
    fixed edge filters and s, t their learned per-channel scales and biases.

    Args:
        dim: Channels (depth-wise: in = out = groups).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(dim, 1, 3, 3))
        self.bias = nn.Parameter(torch.empty(dim))
        self.edge_scale = nn.Parameter(torch.empty(3, dim))
        self.edge_bias = nn.Parameter(torch.empty(3, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        nn.init.uniform_(self.bias, -1 / 3, 1 / 3)  # 1 / sqrt(fan_in = 9)
        # edge branches start almost silent, as in the official code
        nn.init.normal_(self.edge_scale, std=1e-3)
        nn.init.normal_(self.edge_bias, std=1e-3)

    def kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single equivalent depth-wise kernel (dim, 1, 3, 3) and bias (dim,)."""
        edges = edge_filters(self.weight.device, self.weight.dtype)
        kernel = self.weight + torch.einsum("kc,kij->cij", self.edge_scale, edges).unsqueeze(1)
        return kernel, self.bias + self.edge_bias.sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, bias = self.kernel_and_bias()
        return F.conv2d(x, kernel, bias, padding=1, groups=self.dim)


class LargeKernelDWConv(nn.Module):
    """A large depth-wise kernel, with an edge-aware small kernel beside it during training.

    Args:
        dim: Channels.
        kernel_size: The large kernel's side (9 in CFSR).
        small_kernel: Side of the re-parameterised small branch (3), or None for the large kernel
            alone.
    """

    def __init__(self, dim: int, kernel_size: int = 9, small_kernel: int | None = 3):
        super().__init__()
        if small_kernel not in (None, 3):
            raise ValueError(
                f"small_kernel must be 3 (the edge filters' size) or None, got {small_kernel}"
            )
        self.dim, self.kernel_size = dim, kernel_size
        self.large = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.small = EdgeConv3x3(dim) if small_kernel else None

    def kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        kernel, bias = self.large.weight, self.large.bias
        assert bias is not None  # built with one; the assert narrows the Optional for TorchScript
        if self.small is not None:
            small_kernel, small_bias = self.small.kernel_and_bias()
            pad = (self.kernel_size - 3) // 2
            kernel = kernel + F.pad(small_kernel, (pad, pad, pad, pad))
            bias = bias + small_bias
        return kernel, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, bias = self.kernel_and_bias()
        return F.conv2d(x, kernel, bias, padding=self.kernel_size // 2, groups=self.dim)


def fold_into_conv(module: EdgeConv3x3 | LargeKernelDWConv) -> nn.Conv2d:
    """The plain depth-wise convolution that computes what `module` computes (inference form)."""
    kernel, bias = module.kernel_and_bias()
    size = kernel.shape[-1]
    conv = nn.Conv2d(module.dim, module.dim, size, padding=size // 2, groups=module.dim)
    conv.to(device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
    return conv


def reparameterize(model: nn.Module) -> nn.Module:
    """Replace every edge-aware depth-wise convolution of `model` by its folded plain convolution.

    The outputs are unchanged (up to float rounding); the parameter count drops to the paper's.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, (EdgeConv3x3, LargeKernelDWConv)):
            setattr(model, name, fold_into_conv(child))
        else:
            reparameterize(child)
    return model


@register_token_mixer("cfsr")
class LargeKernelConvMod(nn.Module):
    """CFSR's ConvFormer mixer: `proj(LKConv(GELU(W_a x)) * W_v x)`, a convolutional modulation.

    The norm before it belongs to the block, as in every MetaFormer.

    Args:
        dim: Channels.
        kernel_size: Side of the depth-wise kernel (9).
        small_kernel: Side of the re-parameterised edge-aware branch (3), or None.
    """

    def __init__(self, dim: int, kernel_size: int = 9, small_kernel: int | None = 3):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv2d(dim, dim, 1), nn.GELU(), LargeKernelDWConv(dim, kernel_size, small_kernel)
        )
        self.value = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attention(x) * self.value(x))


class EdgePreservingFFN(nn.Module):
    """CFSR's EFN: `fc2(h + GELU(EdgeConv3x3(h)))` with `h = GELU(fc1(x))`.

    Args:
        dim: Channels in and out.
        mlp_ratio: Hidden width over `dim` (2 in CFSR).
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.edge = EdgeConv3x3(hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = x + self.act(self.edge(x))
        return self.fc2(x)
