"""Evaluation outputs gathered from every process of a distributed (DDP) run.

Metrics that torchmetrics computes synchronise themselves. A task that keeps its own list of
outputs (re-ID's embeddings, volatility's series, surgical video's tool scores) gathers it here
before it computes anything: each process holds only the samples its sampler gave it.
"""

from typing import Any

import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_list(items: list[Any]) -> list[Any]:
    """Every process's `items`, concatenated in rank order (the same list on every process).

    Items are pickled (`all_gather_object`), so they may be CPU tensors, tuples or dicts, and
    processes may hold different numbers of them. In a single process, `items` as it is.
    """
    if not is_distributed():
        return items
    gathered: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for rank_items in gathered for item in rank_items]
