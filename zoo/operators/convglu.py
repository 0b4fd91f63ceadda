"""Convolutional GLU: a gated linear unit whose gate sees a 3x3 neighbourhood (NCHW channel mixer).

`TransNeXt: Robust Foveal Visual Perception for Vision Transformers`
    Shi, CVPR 2024, arXiv 2311.17132, https://github.com/DaiShiResearch/TransNeXt

The input is projected to a gate and a value branch; the gate alone passes a 3x3 depthwise conv
and the activation, so each token's channel attention comes from its nearest neighbours (the
paper's bridge between GLU and squeeze-and-excitation). Our own implementation of the official
layer (Apache-2.0 license), on NCHW maps: the official Linear layers are 1x1 convs here.
"""

import torch
from torch import nn

__all__ = ["ConvGLU"]


class ConvGLU(nn.Module):
    """fc2(act(dwconv3x3(gate)) * value), with [gate, value] = fc1(x).

    Args:
        dim: Input and output channels.
        hidden_dim: Hidden width of the MLP this replaces (default `dim`). As in the paper, the
            GLU uses two thirds of it per branch, so that its parameters match that MLP's.
        act_layer: Activation of the gate.
        drop: Dropout after the gating and after the output projection.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        hidden = int(2 * (hidden_dim or dim) / 3)
        self.fc1 = nn.Conv2d(dim, 2 * hidden, 1, **dd)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, **dd)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=1)
        x = self.drop(self.act(self.dwconv(gate)) * value)
        return self.drop(self.fc2(x))
