"""The Delta Activation Layer: activations that change little between frames, made sparse.

`Training for temporal sparsity in deep neural networks, application in video processing`
    Yousefzadeh and Sifalakis, arXiv 2107.07305.

Layout: (B * T, ...) activations of T consecutive frames per clip (any layout: NCHW, NHWC, NLC;
the layer is element-wise). Per element, a frame transmits its change against what the
previous frames have transmitted so far, and only where that change exceeds `threshold`:

    delta_t  = x_t - xhat_{t-1}                      (xhat_0 = 0: the first frame is sent whole)
    sent_t   = delta_t * (|delta_t| > threshold)
    xhat_t   = xhat_{t-1} + sent_t                   (what the next layer sees)

so |xhat_t - x_t| <= threshold everywhere (the error does not accumulate), and the next layer,
run incrementally on `sent_t`, skips every zero: the temporal sparsity of the paper. Training
passes gradients straight through (d xhat / d x = 1), as quantisation-aware training does, and
adds the L1 norm of the frame-to-frame changes, mean |x_t - x_{t-1}| (`penalty`), to the loss
so that the network learns activations that change less (the paper's sparsity regulariser).
"""

import torch
from torch import nn

__all__ = ["DeltaActivation"]


class DeltaActivation(nn.Module):
    """Thresholded temporal deltas of (B * T, ...) activations; see the module docstring.

    Args:
        threshold: Changes at or below this magnitude are not transmitted (0: every change is).

    After each forward, `penalty` holds the mean |delta_t| over frames t >= 1 (a scalar with
    gradient) and `sparsity` the fraction of zero transmitted deltas over frames t >= 1.
    """

    def __init__(self, threshold: float = 0.1):
        super().__init__()
        if threshold < 0:
            raise ValueError(f"the delta threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self.frames = 1
        self.penalty: torch.Tensor | None = None
        self.sparsity: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        frames = frames or self.frames
        if frames < 2 or x.shape[0] % frames:
            self.penalty = self.sparsity = None
            return x
        clip = x.reshape(x.shape[0] // frames, frames, *x.shape[1:])
        # the reference is built without gradient: the output takes x's gradient straight through
        with torch.no_grad():
            reference = torch.zeros_like(clip[:, 0])
            outputs, zeros = [], []
            for t in range(frames):
                delta = clip[:, t] - reference
                sent = torch.where(delta.abs() > self.threshold, delta, torch.zeros_like(delta))
                reference = reference + sent
                outputs.append(reference)
                if t > 0:
                    zeros.append((sent == 0).float().mean())
            reconstructed = torch.stack(outputs, 1)
        self.sparsity = torch.stack(zeros).mean()
        # the regulariser: L1 of the frame-to-frame changes, with gradient
        self.penalty = (clip[:, 1:] - clip[:, :-1]).abs().mean()
        out = clip + (reconstructed - clip).detach()
        return out.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
