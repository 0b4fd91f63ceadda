"""Temporal models over per-frame features (B, T, D) -> (B, T, D'), and the frozen-feature adapter.

- `TemporalConvNet`: one stage of MS-TCN (Farha and Gall, `MS-TCN: Multi-Stage Temporal
  Convolutional Network for Action Segmentation`, CVPR 2019, arXiv 1903.01945): dilated residual
  1D convolutions, dilation doubling per layer; `causal=True` pads on the left only, so that a
  frame sees its past alone (online recognition, as TeCNO does for surgical phases, arXiv
  2003.10751).
- `TemporalLSTM`: an LSTM over the frames (as SV-RCNet, arXiv 1802.03243); bidirectional
  unless causal.
- `FrameOnly`: no temporal model (each frame on its own), the baseline both must beat.
- `FeatureAdapter`: a residual bottleneck MLP (Houlsby et al., arXiv 1902.00751) between frozen
  spatial features and the temporal model, the compact trainable part of the frozen-backbone
  recipe of `Optimizing ViViT Training: Time and Memory Reduction for Action Recognition`
  (Russo et al., arXiv 2306.04822).

Written here because neither torch nor timm has a temporal head for (B, T, D) sequences.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

TemporalModel = Literal["none", "tcn", "lstm"]


class FrameOnly(nn.Module):
    """Each frame on its own: a per-frame MLP, no information crosses frames."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float = 0.1):
        super().__init__()
        self.out_dim = hidden_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class DilatedResidualLayer(nn.Module):
    """x + drop(1x1(relu(dilated conv(x)))), on (B, D, T); causal pads the past only."""

    def __init__(self, dim: int, dilation: int, kernel_size: int = 3, causal: bool = False,
                 dropout: float = 0.1):  # fmt: skip
        super().__init__()
        span = (kernel_size - 1) * dilation
        # causal: all padding on the left; otherwise centred (kernel_size odd)
        self.padding = (span, 0) if causal else (span // 2, span - span // 2)
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)
        self.pointwise = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(F.pad(x, self.padding)))
        return x + self.dropout(self.pointwise(y))


class TemporalConvNet(nn.Module):
    """A single-stage MS-TCN over (B, T, in_dim) features.

    Args:
        in_dim: Feature size per frame.
        hidden_dim: Width of the layers (the output size).
        num_layers: Dilated residual layers; dilation 1, 2, 4, ... (receptive field
            1 + (kernel_size - 1) * (2 ** num_layers - 1) frames).
        kernel_size: Temporal kernel size.
        causal: Each frame sees only itself and earlier frames.
        dropout: Dropout inside the residual layers.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 64, num_layers: int = 4,
                 kernel_size: int = 3, causal: bool = False, dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.out_dim = hidden_dim
        self.proj = nn.Conv1d(in_dim, hidden_dim, 1)
        self.layers = nn.Sequential(*[
            DilatedResidualLayer(hidden_dim, 2**i, kernel_size, causal, dropout)
            for i in range(num_layers)
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.proj(x.transpose(1, 2))).transpose(1, 2)


class TemporalLSTM(nn.Module):
    """An LSTM over (B, T, in_dim); bidirectional unless `causal` (online use)."""

    def __init__(self, in_dim: int, hidden_dim: int = 64, num_layers: int = 1,
                 causal: bool = False, dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.out_dim = hidden_dim
        bidirectional = not causal
        self.lstm = nn.LSTM(in_dim, hidden_dim // 2 if bidirectional else hidden_dim,
                            num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)  # fmt: skip
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.lstm(x)[0])


def build_temporal_model(kind: TemporalModel, in_dim: int, hidden_dim: int, num_layers: int = 4,
                         kernel_size: int = 3, causal: bool = False,
                         dropout: float = 0.1) -> nn.Module:  # fmt: skip
    """`none`, `tcn` or `lstm` (for the LSTM, `num_layers` is capped at 2); has `out_dim`."""
    match kind:
        case "none":
            return FrameOnly(in_dim, hidden_dim, dropout)
        case "tcn":
            return TemporalConvNet(in_dim, hidden_dim, num_layers, kernel_size, causal, dropout)
        case "lstm":
            return TemporalLSTM(in_dim, hidden_dim, min(num_layers, 2), causal, dropout)
        case other:
            raise ValueError(f"task.temporal must be 'none', 'tcn' or 'lstm', got {other!r}")


class FeatureAdapter(nn.Module):
    """x + up(gelu(down(norm(x)))): a residual bottleneck adapter on (..., dim) features.

    The up projection starts at zero, so the adapter starts as the identity on the frozen
    features and learns only the correction the temporal model needs.
    """

    def __init__(self, dim: int, bottleneck: int = 32):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(self.norm(x))))
