"""The Market-1501 protocol against a loop reference, hand-worked cases, and the re-ID task."""

import numpy as np
import pytest
import torch
from torch import nn

from tasks.reid import ReIDTask, vmf_confidence
from tasks.retrieval import distance_matrix, evaluate_market1501, k_reciprocal_rerank


def reference_market1501(distances, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """A loop over queries following torchreid's `eval_market1501` (torchreid/metrics/rank.py).

    torchreid's Market-1501 reader drops junk (pid -1) gallery images before evaluating, so this
    reference drops them first too.
    """
    keep = g_pids != -1
    distances, g_pids, g_camids = distances[:, keep], g_pids[keep], g_camids[keep]
    order = np.argsort(distances, axis=1, kind="stable")
    matches = (g_pids[order] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(len(q_pids)):
        removed = (g_pids[order[i]] == q_pids[i]) & (g_camids[order[i]] == q_camids[i])
        raw_cmc = matches[i][~removed]
        if not raw_cmc.any():
            continue  # the query's identity is not in the gallery
        cmc = raw_cmc.cumsum()
        last = np.where(raw_cmc == 1)[0].max()
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0)
        all_ap.append((precision * raw_cmc).sum() / raw_cmc.sum())
    return np.mean(all_cmc, 0), np.mean(all_ap), np.mean(all_inp), len(all_ap)


def _evaluate(distances, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    t = torch.as_tensor
    return evaluate_market1501(t(distances), t(q_pids), t(g_pids), t(q_cams), t(g_cams), max_rank)


@pytest.mark.parametrize("seed", range(5))
def test_equals_the_reference_loop_on_random_distances(seed):
    rng = np.random.default_rng(seed)
    num_query, num_gallery = 40, 300
    q_pids = rng.integers(1, 15, num_query)  # some identities are missing from the gallery
    g_pids = rng.integers(-1, 12, num_gallery)  # junk (-1) and distractors (0) included
    q_cams, g_cams = rng.integers(1, 4, num_query), rng.integers(1, 4, num_gallery)
    distances = rng.random((num_query, num_gallery))
    cmc, ap, inp, valid = reference_market1501(distances, q_pids, g_pids, q_cams, g_cams)
    ours = _evaluate(distances, q_pids, g_pids, q_cams, g_cams)
    assert ours.valid_queries == valid and ours.skipped_queries == num_query - valid
    np.testing.assert_allclose(ours.cmc.numpy(), cmc, rtol=0, atol=1e-12)
    assert ours.map == pytest.approx(ap, abs=1e-12)
    assert ours.minp == pytest.approx(inp, abs=1e-12)


def test_hand_worked_camera_filter_junk_distractor_and_missing_identity():
    #         g0: same pid+cam   g1: pid 2   g2: pid 1   g3: junk   g4: distractor   g5: pid 1
    g_pids = [1, 2, 1, -1, 0, 1]
    g_cams = [1, 2, 2, 2, 3, 3]
    q_pids, q_cams = [1, 3, 2, 2], [1, 1, 2, 1]
    distances = [
        [0.1, 0.3, 0.4, 0.2, 0.5, 0.6],  # kept order g1 g2 g4 g5: hits at 2 and 4
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # pid 3 is not in the gallery: skipped
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # pid 2 only in its own camera: skipped
        [0.5, 0.1, 0.3, 0.05, 0.2, 0.6],  # the junk g3 is nearest, ignored: g1 is rank 1
    ]
    result = _evaluate(distances, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    assert (result.valid_queries, result.skipped_queries) == (2, 2)
    # query 0: AP = (1/2 + 2/4) / 2, INP = 2 / 4, first hit at rank 2; query 3: all 1
    assert result.map == pytest.approx((0.5 + 1.0) / 2)
    assert result.minp == pytest.approx((0.5 + 1.0) / 2)
    assert result.cmc.tolist() == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert result.metrics((1, 5))["rank1"] == 0.5
    # the figure's order: kept items first, filtered ones (g0, g3) last
    assert result.order[0].tolist()[:4] == [1, 2, 4, 5] and not result.kept[0, 4:].any()


def test_no_valid_query_gives_nan_not_an_error():
    result = _evaluate([[0.1]], [1], [1], [1], [1])
    assert result.valid_queries == 0 and np.isnan(result.map)


def test_distances_and_reranking():
    torch.manual_seed(0)
    centres = torch.randn(6, 16) * 3
    pids = torch.arange(6).repeat_interleave(5)
    features = centres[pids] + torch.randn(30, 16)
    query, gallery = features[::5], torch.cat([features[i * 5 + 1 : i * 5 + 5] for i in range(6)])
    g_pids = torch.arange(6).repeat_interleave(4) + 1
    euclid = distance_matrix(query, gallery, "euclidean")
    assert torch.allclose(euclid, torch.cdist(query.double(), gallery.double()) ** 2)
    cosine = distance_matrix(query, gallery, "cosine")
    assert cosine.min() >= -1e-9 and cosine.max() <= 2 + 1e-9
    with pytest.raises(ValueError, match="distance must be"):
        distance_matrix(query, gallery, "manhattan")
    reranked = k_reciprocal_rerank(query, gallery, k1=4, k2=2)
    assert reranked.shape == (6, 24) and torch.isfinite(reranked).all()
    cams = torch.ones(6, dtype=torch.long), torch.full((24,), 2)
    before = evaluate_market1501(euclid, torch.arange(6) + 1, g_pids, *cams)
    after = evaluate_market1501(reranked, torch.arange(6) + 1, g_pids, *cams)
    assert after.map >= before.map - 0.05  # clean clusters: re-ranking keeps them retrieved


class _StandIn(nn.Module):
    """A 1-conv 'backbone' with timm's forward_features / num_features interface."""

    num_features = 8

    def __init__(self, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(kwargs.get("in_chans", 3), 8, 3, padding=1)

    def forward_features(self, x):
        return torch.relu(self.conv(x))

    def forward_head(self, x, pre_logits=False):
        return x.mean((2, 3))


@pytest.fixture
def task(monkeypatch):
    monkeypatch.setattr("tasks.base.timm.create_model", lambda *a, **k: _StandIn(**k))
    return ReIDTask(num_classes=4, backbone="stand_in", input_size=(16, 8), pooling="gem")


def test_training_step_mixes_identity_and_triplet_losses(task):
    batch = {"image": torch.randn(8, 3, 16, 8), "label": torch.arange(4).repeat_interleave(2)}
    task.log = task.log_dict = lambda *a, **k: None
    loss = task.training_step(batch, 0)
    assert loss.isfinite() and loss.requires_grad
    assert task(batch["image"]).shape == (8, 512)


def test_restoration_networks_are_refused():
    with pytest.raises(ValueError, match="image restoration network.*task=reid"):
        ReIDTask(num_classes=4, backbone="dncnn", input_size=(16, 8))


def test_vmf_confidence_separates_right_from_wrong_rank1():
    torch.manual_seed(0)
    dim, ids = 64, 12
    centres = torch.nn.functional.normalize(torch.randn(ids, dim), dim=1)
    g_pids = torch.arange(ids).repeat_interleave(4) + 1
    gallery = centres[g_pids - 1] + 0.05 * torch.randn(len(g_pids), dim)
    # queries: half near their identity, half between two identities (the confusing ones)
    q_pids = torch.arange(ids) + 1
    mix = torch.linspace(0, 0.6, ids)[:, None]
    query = (1 - mix) * centres + mix * centres.roll(1, 0) + 0.05 * torch.randn(ids, dim)
    out = {
        "embedding": torch.cat([query, gallery]),
        "pid": torch.cat([q_pids, g_pids]),
        "camid": torch.cat([torch.ones(ids), torch.full((len(g_pids),), 2)]).long(),
        "is_query": torch.cat([torch.ones(ids), torch.zeros(len(g_pids))]).bool(),
    }
    q = out["is_query"]
    result = evaluate_market1501(
        distance_matrix(out["embedding"][q], out["embedding"][~q], "cosine"),
        out["pid"][q], out["pid"][~q], out["camid"][q], out["camid"][~q],
    )  # fmt: skip
    assert 0 < result.rank1_hit.float().mean() < 1
    report = vmf_confidence(out, result)
    assert report["confidence_auroc"] > 0.8
    assert report["kappa_median"] > dim  # concentrated identities: kappa far above d


def test_the_backbones_unused_head_is_frozen():
    # OSNet's own 512-d embedding comes after forward_features: no gradient ever reaches it,
    # which DDP refuses (tests/test_distributed.py runs task=reid under DDP)
    task = ReIDTask(num_classes=4, backbone="osnet_x0_25", input_size=(64, 32))
    frozen = {name for name, p in task.backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith("head.") for name in frozen)
    images = torch.randn(4, 3, 64, 32)
    _, logits = task.neck(task.features(images))
    logits.sum().backward()
    trained = [p for p in task.backbone.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trained)
