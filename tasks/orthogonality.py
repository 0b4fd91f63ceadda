"""The orthogonality regulariser for convolutions, as a callback any task can switch on.

`Existence, Stability and Scalability of Orthogonal Convolutional Neural Networks`
    Achour, Malgouyres, Mamalet, JMLR 2022, arXiv 2108.05623
(the regulariser itself is from Wang et al., `Orthogonal Convolutional Neural Networks`, CVPR 2020.)

For a kernel K of M output and C input channels, size k and stride S, with P = floor((k-1)/S) * S,

    row orthogonality    (M <= C S^2): L(K) = ||conv(K, K, padding=P, stride=S) - I_r0||_F^2
    column orthogonality (M >= C S^2): L(K) = ||conv(K, K, padding=P, stride=S) - I_r0||_F^2 - (M - C / S^2)

where conv(K, K) convolves the M filters (as a batch of C-channel images) with themselves and
I_r0 is the identity at the centre tap. L(K) = 0 exactly when the layer is orthogonal (row) or an
isometry (column) for circular boundary conditions; the paper proves it is stable: a small L(K)
means a layer close to orthogonal.
"""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


def orthogonality_loss(weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """L_orth of a (M, C, k, k) convolution kernel (groups = 1)."""
    out_chs, in_chs, k, _ = weight.shape
    padding = ((k - 1) // stride) * stride
    gram = F.conv2d(weight, weight, padding=padding, stride=stride)  # (M, M, 2P/S+1, 2P/S+1)
    target = torch.zeros_like(gram)
    centre = gram.shape[-1] // 2
    target[:, :, centre, centre] = torch.eye(out_chs, dtype=weight.dtype, device=weight.device)
    loss = (gram - target).pow(2).sum()
    if out_chs * stride**2 > in_chs:  # column case: the M - C/S^2 unreachable terms
        loss = loss - (out_chs - in_chs / stride**2)
    return loss


def regularised_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The dense (groups = 1), square, trainable 2D convolutions of `model`."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
        and m.groups == 1
        and m.kernel_size[0] == m.kernel_size[1]
        and m.stride[0] == m.stride[1]
        and m.weight.requires_grad
    ]


class OrthogonalityRegularizer(L.Callback):
    """Adds `weight * sum_layers L_orth` to the training loss of any task.

    Its gradient is added after the task's own backward pass, which is the same as adding the
    term to the loss, so no task needs to know about it. The term is logged as `train/orth`.
    """

    def __init__(self, weight: float = 1e-3):
        self.weight = weight
        self._convs: list[nn.Conv2d] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._convs = regularised_convs(pl_module)
        if not self._convs:
            raise ValueError(
                "callbacks=orthogonal found no dense square Conv2d in the model to regularise"
            )

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        penalty = sum(orthogonality_loss(c.weight, c.stride[0]) for c in self._convs)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        scale = scaler.get_scale() if scaler is not None else 1.0  # match AMP's scaled grads
        (self.weight * scale * penalty).backward()
        pl_module.log("train/orth", penalty.detach(), on_step=True, on_epoch=False)
