"""TCNCA: a dilated temporal convolution network with chunked attention.

`TCNCA: Temporal Convolution Network with Chunked Attention for Scalable Sequence Processing`
    Terzic et al., 2023, arXiv 2312.05605

TCNCA takes MEGA's design (a moving-average recurrence feeding chunked attention) and replaces
the exponential-moving-average recurrence by a dilated temporal convolution network: kernels of
a few taps with dilations growing geometrically, so the receptive field grows exponentially with
depth in O(L) time. Attention then runs within non-overlapping chunks of the sequence (linear in
L), gated as in MEGA. Layout (B, D, L); with `causal=True` no output depends on a later input.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .seq_registry import register_sequence_mixer

__all__ = ["DilatedTCN", "TCNCAMixer"]


class DilatedTCN(nn.Module):
    """Depthwise dilated convolutions, dilation 1, 2, 4 ... with residual connections.

    Args:
        dim: Channels.
        levels: Layers; the receptive field is 1 + (kernel_size - 1) * (2**levels - 1).
        kernel_size: Taps per layer.
        causal: Pad on the left only.
    """

    def __init__(self, dim: int, levels: int = 4, kernel_size: int = 3, causal: bool = True):
        super().__init__()
        self.causal, self.kernel_size = causal, kernel_size
        self.convs = nn.ModuleList(
            nn.Conv1d(dim, dim, kernel_size, dilation=2**i, groups=dim) for i in range(levels)
        )

    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * (2 ** len(self.convs) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            reach = (self.kernel_size - 1) * conv.dilation[0]
            padding = (reach, 0) if self.causal else (reach // 2, reach - reach // 2)
            x = x + F.gelu(conv(F.pad(x, padding)))
        return x


@register_sequence_mixer("tcnca")
class TCNCAMixer(nn.Module):
    """Dilated TCN, then single-head attention within chunks, gated: MEGA's layout with a TCN.

    Args:
        dim: Channels.
        chunk: Tokens per attention chunk.
        levels: TCN layers.
        kernel_size: TCN taps.
        causal: Causal TCN and causal attention within each chunk.
    """

    def __init__(
        self, dim: int, chunk: int = 16, levels: int = 4, kernel_size: int = 3, causal: bool = True
    ):
        super().__init__()
        self.chunk, self.causal = chunk, causal
        self.tcn = DilatedTCN(dim, levels, kernel_size, causal)
        self.qk = nn.Conv1d(dim, 2 * dim, 1)
        self.v = nn.Conv1d(dim, dim, 1)
        self.gate = nn.Conv1d(dim, dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, D, L = x.shape
        context = self.tcn(x)
        q, k = self.qk(context).chunk(2, 1)
        v = self.v(x)
        pad = -L % self.chunk
        # (B, chunks, chunk, D): attention never crosses a chunk boundary, so cost is O(L * chunk)
        q, k, v = (
            F.pad(t, (0, pad)).transpose(1, 2).reshape(B, -1, self.chunk, D) for t in (q, k, v)
        )
        if self.causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            valid = (
                torch.arange(L + pad, device=x.device).view(-1, self.chunk) < L
            )  # padded keys off
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[None, :, None, :])
        y = y.reshape(B, L + pad, D)[:, :L].transpose(1, 2)
        return self.proj_out(y * torch.sigmoid(self.gate(x)))
