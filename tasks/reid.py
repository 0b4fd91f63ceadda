"""Person re-identification with any classifier backbone: pooling, BNNeck, ID + triplet losses.

`Bag of Tricks and A Strong Baseline for Deep Person Re-identification`
    Luo et al., CVPRW 2019, arXiv 1903.07071 (BNNeck, label smoothing, the loss mix)
`In Defense of the Triplet Loss for Person Re-Identification`
    Hermans et al., 2017, arXiv 1703.07737 (batch-hard triplets over P x K batches)
`Omni-Scale Feature Learning for Person Re-Identification`
    Zhou et al., ICCV 2019, arXiv 1905.00953 (OSNet, the default backbone)

The backbone's feature map is pooled (average or GeM), projected to an embedding, and passed
through a BNNeck. Losses come from pytorch-metric-learning (triplet margin loss with its
batch-hard miner) and torch (label-smoothed cross-entropy). Evaluation runs the Market-1501
protocol (tasks/retrieval.py) over the whole query and gallery at the end of each validation
and test epoch. The test also fits a von Mises-Fisher distribution to each gallery identity's
normalised embeddings (tasks/bessel.py) and scores each query's rank-1 answer by its posterior
probability under that mixture; results.json reports whether that confidence separates right
from wrong rank-1 answers (AUROC).
"""

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from sklearn.metrics import roc_auc_score
from torch import nn

from zoo.backbones.restoration_nets import is_restoration_net

from .base import BaseTask
from .bessel import fit_vmf_concentration, vmf_log_normalizer
from .distributed import gather_list
from .heads.reid import BNNeck, GeneralizedMeanPool
from .retrieval import (
    DISTRACTOR_PID,
    Distance,
    RetrievalResult,
    distance_matrix,
    evaluate_market1501,
    k_reciprocal_rerank,
)

if TYPE_CHECKING:
    from .predict import PredictionInputs

#: Input sub-folders that mode=predict reads as the query and as the gallery.
QUERY_FOLDERS, GALLERY_FOLDERS = ("query",), ("gallery", "bounding_box_test")


class ReIDTask(BaseTask):
    """Re-ID: CMC rank-1/5/10, mAP and mINP on query vs gallery (higher is better).

    Args:
        num_classes: Training identities, from the datamodule.
        input_size: (H, W) of the crops, from the datamodule (probes the backbone's output).
        pooling: `avg` or `gem` over the feature map (backbones that return tokens use their
            own pooled features).
        embed_dim: Width of the linear embedding before the BNNeck; None keeps the pooled width.
        label_smoothing: Label smoothing of the identity cross-entropy.
        ce_weight: Weight of the identity loss.
        triplet_weight: Weight of the batch-hard triplet loss.
        triplet_margin: Margin of the triplet loss (on L2-normalised embeddings).
        distance: `cosine` or `euclidean` retrieval distance.
        rerank: k-reciprocal re-ranking of the test distances (Zhong et al. 2017).
        rerank_k1: k1 of re-ranking.
        rerank_k2: k2 of re-ranking.
        rerank_lambda: Weight of the original distance in re-ranking.
        plot_queries: Queries shown in the ranked-results figure.
        **kwargs: See `BaseTask`.
    """

    name = "reid"
    monitor: ClassVar[str] = "val/map"
    mode: ClassVar[str] = "max"
    main_metric: ClassVar[str] = "test/rank1"

    def __init__(
        self,
        num_classes: int,
        input_size: tuple[int, int] = (128, 64),
        pooling: Literal["avg", "gem"] = "avg",
        embed_dim: int | None = 512,
        label_smoothing: float = 0.1,
        ce_weight: float = 1.0,
        triplet_weight: float = 1.0,
        triplet_margin: float = 0.3,
        distance: Distance = "cosine",
        rerank: bool = False,
        rerank_k1: int = 20,
        rerank_k2: int = 6,
        rerank_lambda: float = 0.3,
        plot_queries: int = 8,
        **kwargs,
    ):
        self.num_classes = num_classes
        super().__init__(**kwargs)
        self._outputs: list[dict[str, torch.Tensor]] = []
        self._extra: dict[str, Any] = {}

    def configure_models(self) -> None:
        hp = self.hparams
        if is_restoration_net(hp.backbone):
            raise ValueError(
                f"backbone {hp.backbone!r} is an image restoration network (image -> image), "
                "not a classifier: task=reid needs a feature map to pool into an embedding. "
                "Use it with task=super_resolution or task=denoising."
            )
        self.backbone = self.create_backbone(num_classes=0)
        width, self._map_layout = self._probe()
        if self._map_layout != "head":
            self._freeze_unused_head()
        match hp.pooling:
            case "avg":
                self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
            case "gem":
                self.pool = GeneralizedMeanPool()
            case other:
                raise ValueError(f"task.pooling must be 'avg' or 'gem', got {other!r}")
        embed_dim = hp.embed_dim or width
        self.embed = nn.Linear(width, embed_dim, bias=False) if hp.embed_dim else nn.Identity()
        self.neck = BNNeck(embed_dim, self.num_classes)

    def _probe(self) -> tuple[int, str]:
        """The width and layout of the backbone's features at the data's input size.

        `forward_features` is an unpooled NCHW map for most backbones (pooled here), NHWC for a
        few, and tokens or a list for transformers: those use `forward_head(pre_logits=True)`.
        """
        was_training = self.backbone.training
        self.backbone.eval()
        example = torch.zeros(1, self.hparams.in_chans, *self.hparams.input_size)
        with torch.no_grad():
            features = self.backbone.forward_features(example)
            width = getattr(self.backbone, "num_features", None)
            if isinstance(features, torch.Tensor) and features.ndim == 4:
                layout = "nchw" if features.shape[1] == width else "nhwc"
                if layout == "nhwc" and features.shape[-1] != width:
                    layout = "head"
            else:
                layout = "head"
            if layout == "head":
                width = self.backbone.forward_head(features, pre_logits=True).shape[-1]
        self.backbone.train(was_training)
        return int(width), layout

    def _freeze_unused_head(self) -> None:
        """Stop training what the embedding never reaches: the backbone's own head after
        `forward_features` (OSNet's 512-d embedding, ConvNeXt's head norm). DDP refuses
        parameters that get no gradient, and weight decay would shrink them for nothing."""
        was_training = self.backbone.training
        self.backbone.eval()  # no batch-norm statistics change
        example = torch.zeros(1, self.hparams.in_chans, *self.hparams.input_size)
        self.backbone.forward_features(example).float().sum().backward()
        for parameter in self.backbone.parameters():
            if parameter.grad is None:
                parameter.requires_grad_(False)
            parameter.grad = None
        self.backbone.train(was_training)

    def configure_losses(self) -> None:
        self.id_loss = nn.CrossEntropyLoss(label_smoothing=self.hparams.label_smoothing)
        self.triplet_loss = TripletMarginLoss(margin=self.hparams.triplet_margin)
        self.miner = BatchHardMiner()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The embedding f_t before the BNNeck."""
        x = self.backbone.forward_features(images)
        match self._map_layout:
            case "nchw":
                pooled = self.pool(x)
            case "nhwc":
                pooled = self.pool(x.permute(0, 3, 1, 2))
            case _:
                pooled = self.backbone.forward_head(x, pre_logits=True)
        return self.embed(pooled)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Retrieval embeddings f_i (after the BNNeck's batch norm)."""
        return self.neck(self.features(image))[0]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels = batch["label"]
        features = self.features(batch["image"])
        _, logits = self.neck(features)
        id_loss = self.id_loss(logits, labels)
        triplet = self.triplet_loss(features, labels, self.miner(features, labels))
        loss = self.hparams.ce_weight * id_loss + self.hparams.triplet_weight * triplet
        n = len(labels)
        self.log_dict({"train/id_loss": id_loss, "train/triplet_loss": triplet}, batch_size=n)
        self.log("train/loss", loss, batch_size=n, prog_bar=True)
        self.log("train/id_acc", (logits.argmax(1) == labels).float().mean(), batch_size=n)
        return self.check_finite(loss)

    def _collect(self, batch: dict) -> None:
        self._outputs.append(
            {
                "embedding": self(batch["image"]).float().cpu(),
                **{k: batch[k].cpu() for k in ("pid", "camid", "is_query", "index")},
            }
        )

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch)

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._collect(batch)

    def _evaluate(self, split: str) -> tuple[RetrievalResult, dict[str, torch.Tensor]] | None:
        outputs, self._outputs = gather_list(self._outputs), []
        if not outputs:
            return None
        out = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
        # the data set's order whatever the number of processes: ties rank the same way
        order = out["index"].argsort()
        out = {k: v[order] for k, v in out.items()}
        q, g = out["is_query"], ~out["is_query"]
        if not q.any() or not g.any():
            rank_zero_warn(f"{split}: the evaluated batches hold no query or no gallery image")
            return None
        hp = self.hparams
        if split == "test" and hp.rerank:
            distances = k_reciprocal_rerank(out["embedding"][q], out["embedding"][g],
                                            hp.rerank_k1, hp.rerank_k2, hp.rerank_lambda)  # fmt: skip
        else:
            distances = distance_matrix(out["embedding"][q], out["embedding"][g], hp.distance)
        result = evaluate_market1501(
            distances, out["pid"][q], out["pid"][g], out["camid"][q], out["camid"][g],
            max_rank=min(50, int(g.sum())),
        )  # fmt: skip
        if result.valid_queries == 0:
            rank_zero_warn(f"{split}: no query has a true match in the gallery; scores are 0")
            metrics = dict.fromkeys(("rank1", "rank5", "rank10", "map", "minp"), 0.0)
        else:
            metrics = result.metrics()
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, prog_bar=split == "val")
        return result, out

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        evaluated = self._evaluate("test")
        if evaluated is None:
            return
        result, out = evaluated
        q, g = out["is_query"], ~out["is_query"]
        self._extra = {
            "retrieval": {
                "distance": self.hparams.distance,
                "rerank": self.hparams.rerank,
                "queries": int(q.sum()),
                "gallery": int(g.sum()),
                "skipped_queries": result.skipped_queries,
            },
            "vmf": vmf_confidence(out, result),
        }
        dataset = self._test_dataset()
        if dataset is not None and hasattr(dataset, "raw_image") and result.valid_queries:
            self.log_figure("test/ranked_results", ranked_results_figure(
                result, out, dataset, self.hparams.plot_queries))  # fmt: skip
        self.log_figure("test/embeddings_pca", pca_figure(out))

    def _test_dataset(self):
        datamodule = getattr(self.trainer, "datamodule", None)
        return getattr(datamodule, "datasets", {}).get("test")

    def extra_results(self) -> dict[str, Any]:
        return self._extra

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`embeddings.csv`: each image's file and retrieval embedding. When the input folder
        holds `query/` and `gallery/` (or Market-1501's `bounding_box_test/`) folders,
        `matches.csv` too: each query's 10 nearest gallery images (query, rank, gallery,
        distance), by the task's distance."""
        transform = inputs.transform()
        embeddings = []
        for files in inputs.batches(32):
            images = torch.stack([transform(image=inputs.read_image(p))["image"] for p in files])
            embeddings.append(self(images.to(self.device)).float().cpu())
        embedding = torch.cat(embeddings)
        names = [inputs.name(p) for p in inputs.files]
        written = [out_dir / "embeddings.csv"]
        with written[0].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", *(f"e{i}" for i in range(embedding.shape[1]))])
            writer.writerows(
                [n, *(f"{v:.6g}" for v in e)] for n, e in zip(names, embedding.tolist())
            )
        folder = [n.split("/")[0] for n in names]
        query = torch.tensor([f in QUERY_FOLDERS for f in folder])
        gallery = torch.tensor([f in GALLERY_FOLDERS for f in folder])
        if query.any() and gallery.any():
            distances = distance_matrix(embedding[query], embedding[gallery], self.hparams.distance)
            top = distances.topk(min(10, int(gallery.sum())), dim=1, largest=False)
            gallery_names = [n for n, g in zip(names, gallery.tolist()) if g]
            query_names = [n for n, q in zip(names, query.tolist()) if q]
            written.append(out_dir / "matches.csv")
            with written[1].open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["query", "rank", "gallery", "distance"])
                for q, values, order in zip(
                    query_names, top.values.clamp_min(0).tolist(), top.indices.tolist()
                ):
                    writer.writerows([q, r + 1, gallery_names[g], f"{d:.6f}"]
                                     for r, (d, g) in enumerate(zip(values, order)))  # fmt: skip
        return written

    def export_outputs(self) -> dict[str, str]:
        return {
            "embedding": f"(B, D) retrieval embeddings; compare by {self.hparams.distance} distance"
        }


def vmf_confidence(out: dict[str, torch.Tensor], result: RetrievalResult) -> dict[str, Any]:
    """Fit a vMF per gallery identity; a query's confidence is its rank-1 identity's posterior.

    The confidence is reported as posterior log-odds against the runner-up identity.

    Each identity's mean direction and concentration kappa are fitted (maximum likelihood) to its
    normalised gallery embeddings; an identity with a single image gets the median kappa. The
    posterior over identities uses the exact vMF normaliser, log I_{d/2-1}(kappa), which
    overflows float64 for d = 512 and kappa in the hundreds unless computed in log space.
    """
    q, g = out["is_query"], ~out["is_query"]
    embeddings = F.normalize(out["embedding"].double(), dim=1)
    gallery, gallery_pids = embeddings[g], out["pid"][g]
    identities = [p for p in gallery_pids.unique().tolist() if p != DISTRACTOR_PID and p > 0]
    if not identities:
        return {"confidence_auroc": None}
    dim = embeddings.shape[1]
    means = torch.stack([gallery[gallery_pids == p].mean(0) for p in identities])
    sizes = torch.tensor([int((gallery_pids == p).sum()) for p in identities])
    lengths = means.norm(dim=1)
    # with n images the mean resultant length is biased up by ~1/n: Sra's correction
    unbiased = ((sizes * lengths.square() - 1) / (sizes - 1).clamp_min(1)).clamp_min(1e-6).sqrt()
    kappa = fit_vmf_concentration(unbiased, dim)
    several = sizes > 1
    if several.any():
        kappa = torch.where(several, kappa, kappa[several].median())
    directions = F.normalize(means, dim=1)
    log_likelihood = vmf_log_normalizer(kappa, dim)[None] + kappa[None] * (
        embeddings[q] @ directions.T
    )
    # the identity of each query's rank-1 gallery image (after the protocol's filters)
    top_pid = gallery_pids[result.order[:, 0]]
    column = {p: i for i, p in enumerate(identities)}
    index = torch.tensor([column.get(p, -1) for p in top_pid.tolist()])
    # confidence: the posterior log-odds of that identity against the best other one. The
    # posterior itself saturates at 1 in float for kappa in the hundreds; its log-odds do not
    chosen = log_likelihood.gather(1, index.clamp_min(0)[:, None])[:, 0]
    others = log_likelihood.scatter(1, index.clamp_min(0)[:, None], -torch.inf).amax(1)
    confidence = torch.where(index >= 0, chosen - others, -torch.inf)
    if len(identities) == 1:
        confidence = torch.zeros_like(chosen)
    valid = result.valid
    correct = result.rank1_hit[valid]
    auroc = None
    if correct.any() and not correct.all():
        # sklearn's AUROC takes any real scores (torchmetrics' would squash them by a sigmoid)
        auroc = float(roc_auc_score(correct.numpy(), confidence[valid].clamp_min(-1e300).numpy()))
    return {
        "confidence_auroc": auroc,
        "log_odds_median_correct": float(confidence[valid][correct].median()) if correct.any()
        else None,
        "log_odds_median_wrong": float(confidence[valid][~correct].median()) if (~correct).any()
        else None,
        "kappa_median": float(kappa.median()),
        "kappa_range": [float(kappa.min()), float(kappa.max())],
        "embedding_dim": dim,
    }  # fmt: skip


def ranked_results_figure(result: RetrievalResult, out: dict, dataset, count: int) -> plt.Figure:
    """Queries (left) and their top-10 gallery images, framed green (match) or red (no match)."""
    q, g = out["is_query"], ~out["is_query"]
    query_index, gallery_index = out["index"][q], out["index"][g]
    query_pids, gallery_pids = out["pid"][q], out["pid"][g]
    valid = result.valid.nonzero().flatten()
    # an even spread over the queries, so that easy and hard identities both show
    shown = valid[torch.linspace(0, len(valid) - 1, min(count, len(valid))).long()]
    top = min(10, result.order.shape[1])
    figure, axes = plt.subplots(len(shown), top + 1, figsize=(0.9 * (top + 1), 1.9 * len(shown)),
                                squeeze=False)  # fmt: skip
    for row, qi in zip(axes, shown.tolist()):
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].imshow(dataset.raw_image(int(query_index[qi])))
        row[0].set_title(f"query {int(query_pids[qi])}", fontsize=7)
        for spine in row[0].spines.values():
            spine.set_color("black")
        for rank in range(top):
            gi = int(result.order[qi, rank])
            if not result.kept[qi, rank]:
                row[rank + 1].axis("off")
                continue
            match = bool(gallery_pids[gi] == query_pids[qi])
            ax = row[rank + 1]
            ax.imshow(dataset.raw_image(int(gallery_index[gi])))
            ax.set_title(str(rank + 1), fontsize=7)
            for spine in ax.spines.values():
                spine.set_color("limegreen" if match else "red")
                spine.set_linewidth(3)
    figure.tight_layout()
    return figure


def pca_figure(out: dict, identities: int = 20) -> plt.Figure:
    """A 2-D PCA of the test embeddings of a few identities, coloured by identity."""
    pids = out["pid"]
    chosen = [p for p in pids.unique().tolist() if p > 0][:identities]
    mask = torch.isin(pids, torch.tensor(chosen))
    x = F.normalize(out["embedding"][mask].double(), dim=1)
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()
    figure, ax = plt.subplots(figsize=(5, 5))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(1, len(chosen))))
    for colour, pid in zip(colours, chosen):
        sel = (pids[mask] == pid).numpy()
        query = out["is_query"][mask].numpy() & sel
        ax.scatter(*xy[sel & ~query].T, color=colour, s=14)
        ax.scatter(*xy[query].T, color=colour, s=40, marker="*", edgecolors="black", linewidths=0.4)
    ax.set_title(f"test embeddings, {len(chosen)} identities (stars: queries)", fontsize=9)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    figure.tight_layout()
    return figure
