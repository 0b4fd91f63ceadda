"""Re-ID heads: generalised-mean pooling and the BNNeck.

`Fine-tuning CNN Image Retrieval with No Human Annotation`
    Radenović et al., TPAMI 2018, arXiv 1711.00512 (GeM pooling)
`Bag of Tricks and A Strong Baseline for Deep Person Re-identification`
    Luo et al., CVPRW 2019, arXiv 1903.07071 (BNNeck)
"""

import torch
import torch.nn.functional as F
from torch import nn


class GeneralizedMeanPool(nn.Module):
    """(B, C, H, W) -> (B, C): (mean x^p)^(1/p), p learned; p=1 is average, p->inf max pooling."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the power is only defined for positive responses: clamp, as the paper does after ReLU
        pooled = F.adaptive_avg_pool2d(x.clamp_min(self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p).flatten(1)


class BNNeck(nn.Module):
    """Embedding f_t -> BatchNorm (no shift) -> f_i -> bias-free identity classifier.

    The triplet loss sees f_t, the cross-entropy sees the classifier on f_i, and retrieval uses
    f_i: the BN separates the two losses' geometries (Luo et al. 2019, Sec. 4.2).
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)  # a shift would move f_i off the origin for nothing
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (f_i, logits)."""
        normalized = self.bn(features)
        return normalized, self.classifier(normalized)
