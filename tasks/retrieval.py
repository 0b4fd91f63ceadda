"""Query-vs-gallery retrieval: distances, the Market-1501 protocol and k-reciprocal re-ranking.

`Scalable Person Re-identification: A Benchmark`
    Zheng et al., ICCV 2015 (Market-1501: CMC and mAP, the same-camera filter, junk images)
`Person Re-identification with Deep Learning: A Survey and Outlook`
    Ye et al., TPAMI 2021, arXiv 2001.04193 (mINP)
`Re-ranking Person Re-identification with k-reciprocal Encoding`
    Zhong et al., CVPR 2017, arXiv 1701.08398

torchmetrics has retrieval metrics per query but not this protocol (its camera filter, junk and
distractors, CMC and mINP), so it is written here, vectorised over queries; it is tested equal to
a loop that follows torchreid's `eval_market1501` (tests/tasks/test_reid.py).
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Distance = Literal["euclidean", "cosine"]

#: Identity of junk gallery images (ignored) and of distractors (negatives for every query).
JUNK_PID, DISTRACTOR_PID = -1, 0


def distance_matrix(query: torch.Tensor, gallery: torch.Tensor, metric: Distance) -> torch.Tensor:
    """(Q, D) x (G, D) -> (Q, G) squared Euclidean distances, or cosine distances 1 - cos."""
    match metric:
        case "euclidean":
            return torch.cdist(query.double(), gallery.double()).square()
        case "cosine":
            return 1 - F.normalize(query.double(), dim=1) @ F.normalize(gallery.double(), dim=1).T
        case other:
            raise ValueError(f"distance must be 'euclidean' or 'cosine', got {other!r}")


@dataclass
class RetrievalResult:
    """The protocol's figures: CMC (rank k = index k-1), mAP, mINP, and per-query details."""

    cmc: torch.Tensor
    map: float
    minp: float
    valid_queries: int
    skipped_queries: int
    #: Per query: whether it has a true match (the others are skipped), and its rank-1 hit.
    valid: torch.Tensor
    rank1_hit: torch.Tensor
    #: Per query: gallery indices sorted by distance, filtered items moved to the end.
    order: torch.Tensor
    #: Per query and sorted position: whether the protocol keeps that gallery item.
    kept: torch.Tensor

    def metrics(self, ranks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
        out = {f"rank{k}": float(self.cmc[min(k, len(self.cmc)) - 1]) for k in ranks}
        return out | {"map": self.map, "minp": self.minp}


def evaluate_market1501(
    distances: torch.Tensor,
    query_pids: torch.Tensor,
    gallery_pids: torch.Tensor,
    query_camids: torch.Tensor,
    gallery_camids: torch.Tensor,
    max_rank: int = 50,
) -> RetrievalResult:
    """CMC, mAP and mINP of the Market-1501 protocol from a (Q, G) distance matrix.

    For each query the gallery is sorted by distance; gallery images of the query's identity
    seen by the query's camera are removed, and junk images (pid -1) too; distractors (pid 0)
    stay, as negatives. A query left with no true match is skipped (counted in
    `skipped_queries`) and contributes to no figure. AP is the mean of the precisions at each
    hit; INP is hits / rank of the last hit.
    """
    order = torch.argsort(distances, dim=1, stable=True)
    ranked_pids, ranked_cams = gallery_pids[order], gallery_camids[order]
    same_pid = ranked_pids == query_pids[:, None]
    kept = ~(same_pid & (ranked_cams == query_camids[:, None])) & (ranked_pids != JUNK_PID)
    hits = same_pid & kept
    # the 1-based position among kept items, and the hit count up to each position
    position = kept.cumsum(1)
    hit_count = hits.cumsum(1)
    relevant = hits.sum(1)
    valid = relevant > 0
    precision_at_hits = torch.where(hits, hit_count.double() / position.clamp_min(1), 0.0)
    ap = precision_at_hits.sum(1) / relevant.clamp_min(1)
    last_hit = torch.where(hits, position, 0).amax(1)
    inp = relevant.double() / last_hit.clamp_min(1)
    big = torch.iinfo(position.dtype).max
    first_hit = torch.where(hits, position, big).amin(1)
    ranks = torch.arange(1, max_rank + 1, device=distances.device)
    cmc_per_query = (first_hit[:, None] <= ranks).double()
    n_valid = int(valid.sum())
    # filtered items moved behind the kept ones, for the ranked-results figure
    display = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)
    if n_valid == 0:
        nan = float("nan")
        cmc = torch.full((max_rank,), nan, dtype=torch.float64)
        return RetrievalResult(
            cmc, nan, nan, 0, len(valid), valid, first_hit == 1,
            order.gather(1, display), kept.gather(1, display),
        )  # fmt: skip
    return RetrievalResult(
        cmc=cmc_per_query[valid].mean(0).cpu(),
        map=float(ap[valid].double().mean()),
        minp=float(inp[valid].double().mean()),
        valid_queries=n_valid,
        skipped_queries=int((~valid).sum()),
        valid=valid,
        rank1_hit=first_hit == 1,
        order=order.gather(1, display),
        kept=kept.gather(1, display),
    )


def k_reciprocal_rerank(
    query: torch.Tensor,
    gallery: torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> torch.Tensor:
    """Re-ranked (Q, G) distances: Jaccard distance of k-reciprocal sets, mixed with the original.

    Zhong et al. 2017 (arXiv 1701.08398), Sec. 3: each image's k1-reciprocal neighbours,
    expanded by the 1/2 k1-reciprocal neighbours of its members when they overlap by more than
    2/3; Gaussian-kernel weights; local query expansion over k2 neighbours; final distance
    (1 - lambda) * Jaccard + lambda * original. Written in torch (no library ships it);
    memory is O((Q + G)^2).
    """
    features = torch.cat([query, gallery]).double()
    n, num_query = len(features), len(query)
    dist = torch.cdist(features, features).square()
    dist = dist / dist.amax(0, keepdim=True).clamp_min(1e-12)  # column-normalised, as the paper
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    ranking = torch.argsort(dist, dim=1, stable=True)
    neighbours = ranking[:, : k1 + 1]
    half = ranking[:, : round(k1 / 2) + 1]

    def reciprocal(i: int, table: torch.Tensor) -> torch.Tensor:
        forward = table[i]
        return forward[(table[forward] == i).any(1)]

    weights = torch.zeros_like(dist)
    for i in range(n):
        members = reciprocal(i, neighbours)
        expanded = [members]
        member_set = set(members.tolist())
        for candidate in members.tolist():
            candidate_set = reciprocal(candidate, half)
            overlap = sum(1 for c in candidate_set.tolist() if c in member_set)
            if overlap > 2 / 3 * len(candidate_set):
                expanded.append(candidate_set)
        members = torch.unique(torch.cat(expanded))
        kernel = torch.exp(-dist[i, members])
        weights[i, members] = kernel / kernel.sum()
    if k2 > 1:  # local query expansion
        weights = weights[ranking[:, :k2]].mean(1)
    jaccard = torch.empty(num_query, n, dtype=torch.float64)
    for i in range(num_query):
        support = weights[i].nonzero().flatten()
        shared = torch.minimum(weights[i, support][None], weights[:, support]).sum(1)
        jaccard[i] = 1 - shared / (2 - shared)
    final = (1 - lambda_value) * jaccard + lambda_value * dist[:num_query]
    return final[:, num_query:].to(query.dtype)
