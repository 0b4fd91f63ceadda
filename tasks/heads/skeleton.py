"""Topology-preserving skeletonization for gradient-based optimisation, and the clDice loss.

Menten et al., `A skeletonization algorithm for gradient-based optimization`, ICCV 2023,
arXiv 2309.02527 (official code: https://github.com/martinmenten/skeletonization-for-gradient-based-optimization).
The paper's algorithm, in two dimensions: the input is binarised with the reparametrisation
trick and a straight-through estimator; then, for a number of iterations, end points are found
and simple points (those whose deletion keeps the topology) that are not end points are deleted,
in the 2x2 subfields in turn, so that no two deleted points are neighbours. Only additions,
multiplications, shifts and clamps are used, so gradients flow. The paper's 3D version tests
simplicity with Bertrand's Boolean rules or the Euler characteristic; in 2D the equivalent test
for (8, 4) connectivity is Yokoi's connectivity number being 1.

The topology loss is clDice (Shit et al., CVPR 2021, arXiv 2003.07311) with these skeletons, as
the paper uses it for vessel segmentation.
"""

import torch
import torch.nn.functional as F
from torch import nn

# the 8-neighbourhood in circular order from east, counter-clockwise: (row, column) offsets
_RING = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _neighbours(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 neighbours of every pixel of (B, C, H, W) `x`, in `_RING` order (zero outside)."""
    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    return [padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _RING]


def simple_points(x: torch.Tensor) -> torch.Tensor:
    """1 where a foreground pixel of binary `x` is simple for (8, 4) connectivity, else 0.

    Yokoi's connectivity number sum over k in {0, 2, 4, 6} of (b_k - b_k b_{k+1} b_{k+2}), with
    b = 1 - neighbour, is 1 exactly for simple points (0 for isolated and interior points).
    """
    background = [1 - n for n in _neighbours(x)]
    connectivity = sum(
        background[k] - background[k] * background[(k + 1) % 8] * background[(k + 2) % 8]
        for k in (0, 2, 4, 6)
    )
    return x * F.relu(1 - (connectivity - 1).abs())


def end_points(x: torch.Tensor) -> torch.Tensor:
    """1 where a pixel has at most one foreground 8-neighbour (kept: it ends a branch)."""
    return torch.clamp(2 - sum(_neighbours(x)), 0, 1)


class SoftSkeletonize(nn.Module):
    """Skeletons of (B, C, H, W) maps in [0, 1], differentiable, topology preserved.

    Args:
        iterations: Peeling iterations; each removes about one pixel from every border, so it
            should reach half the width of the thickest structure.
        probabilistic: Binarise non-binary inputs by the reparametrisation trick (logistic noise
            of scale `beta`, temperature `tau`) with a straight-through estimator; set False
            for inputs that are already binary.
        beta: Scale of the logistic noise.
        tau: Temperature of the relaxed Bernoulli.
    """

    def __init__(self, iterations: int = 5, probabilistic: bool = True, beta: float = 0.33,
                 tau: float = 1.0):  # fmt: skip
        super().__init__()
        self.iterations, self.probabilistic, self.beta, self.tau = (
            iterations,
            probabilistic,
            beta,
            tau,
        )

    def binarize(self, p: torch.Tensor) -> torch.Tensor:
        eps = 1e-8
        logits = torch.log(p + eps) - torch.log(1 - p + eps)
        uniform = torch.empty_like(p).uniform_(eps, 1 - eps)
        noise = torch.log(uniform) - torch.log(1 - uniform)
        soft = torch.sigmoid((logits + self.beta * noise) / self.tau)
        return (soft > 0.5).to(p.dtype) - soft.detach() + soft

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probabilistic:
            x = self.binarize(x)
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device).view(-1, 1) % 2
        columns = torch.arange(w, device=x.device).view(1, -1) % 2
        subfields = [((rows == r) & (columns == c)).to(x.dtype) for r in (0, 1) for c in (0, 1)]
        for _ in range(self.iterations):
            keep = end_points(x)
            for subfield in subfields:
                # points of one subfield are never 8-adjacent, so deleting them together is safe
                delete = simple_points(x) * (1 - keep) * subfield
                x = torch.minimum(x, 1 - delete)
        return x


class ClDiceLoss(nn.Module):
    """1 - clDice: the harmonic mean of topology precision and sensitivity, per image and class.

    Topology precision: the fraction of the predicted skeleton inside the true mask; topology
    sensitivity: the fraction of the true skeleton inside the predicted mask.

    Args:
        iterations: Skeletonization iterations (see `SoftSkeletonize`).
        smooth: Added to numerators and denominators, so empty maps count as a match.
    """

    def __init__(self, iterations: int = 5, smooth: float = 1.0):
        super().__init__()
        self.soft_skeleton = SoftSkeletonize(iterations, probabilistic=True)
        self.true_skeleton = SoftSkeletonize(iterations, probabilistic=False)
        self.smooth = smooth

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`probs` (B, C, H, W) in [0, 1]; `target` (B, C, H, W) binary, same shape."""
        with torch.no_grad():
            target_skeleton = self.true_skeleton(target)
        predicted_skeleton = self.soft_skeleton(probs)
        dims = (-2, -1)
        precision = ((predicted_skeleton * target).sum(dims) + self.smooth) / (
            predicted_skeleton.sum(dims) + self.smooth
        )
        sensitivity = ((target_skeleton * probs).sum(dims) + self.smooth) / (
            target_skeleton.sum(dims) + self.smooth
        )
        cldice = 2 * precision * sensitivity / (precision + sensitivity)
        return 1 - cldice.mean()
