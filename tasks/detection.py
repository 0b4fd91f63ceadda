"""Object detection with any timm backbone that has a feature pyramid (`features_only`).

The detectors are torchvision's FCOS and RetinaNet: their heads, anchors, box coding, losses,
post-processing and NMS are used as they are. What is ours is the bridge: the backbone's
pyramid levels through torchvision's `FeaturePyramidNetwork` (with `LastLevelP6P7`), optionally
the SEPC neck, optionally bounded deformable convolutions in the head towers.
"""

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from .base import BaseTask
from .heads import FeaturePyramidBackbone, feature_pyramid
from .heads.decoders import group_norm
from .heads.deformable import deformable_towers
from .heads.sepc import SEPC

if TYPE_CHECKING:
    from .predict import PredictionInputs

Head = Literal["fcos", "retinanet"]
Neck = Literal["fpn", "sepc"]


class PyramidNeck(nn.Module):
    """Backbone levels -> FPN (+ P6, P7) (+ SEPC), in torchvision's detection-backbone interface.

    Args:
        pyramid: The backbone's kept levels.
        channels: Width of every output level (`out_channels`, read by torchvision).
        extra_levels: Add P6 and P7 (stride-2 convolutions on the top level).
        sepc: An SEPC module applied to the FPN's outputs, or None.
    """

    def __init__(self, pyramid: FeaturePyramidBackbone, channels: int, extra_levels: bool = True,
                 sepc: SEPC | None = None):  # fmt: skip
        super().__init__()
        self.pyramid, self.out_channels, self.sepc = pyramid, channels, sepc
        extra = LastLevelP6P7(channels, channels) if extra_levels else None
        self.fpn = FeaturePyramidNetwork(pyramid.channels, channels, extra_blocks=extra)
        top = pyramid.reductions[-1]
        self.strides = list(pyramid.reductions) + ([2 * top, 4 * top] if extra_levels else [])

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        levels = self.pyramid(images)
        outputs = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(levels)))
        if self.sepc is not None:
            outputs = OrderedDict(zip(outputs.keys(), self.sepc(list(outputs.values()))))
        return outputs


class DetectionTask(BaseTask):
    """A one-stage detector (FCOS or RetinaNet) over the backbone's feature pyramid.

    Metrics (higher is better, torchmetrics' MeanAveragePrecision with pycocotools): mAP over
    IoU 0.5:0.95, mAP@0.5, mAP@0.75 and each class's AP. Test pictures: predicted boxes with
    scores over the ground truth.

    The detectors' internal transform (`GeneralizedRCNNTransform`) is set to do nothing: the
    datamodule has normalised the images with the backbone's mean/std already (so the
    transform's mean is 0 and std 1), and has sized them to `image_size` (so the transform's
    min/max size is `image_size` and it adds no padding).

    Args:
        num_classes: Classes, from the datamodule (labels 0..num_classes-1).
        class_names: Class names, from the datamodule.
        image_size: Side of the images, from the datamodule.
        head: `fcos` or `retinanet`.
        neck: `fpn`, or `sepc` (FPN, then SEPC's pyramid convolutions).
        fpn_channels: Width of the FPN and the head (a multiple of 32: FCOS's GroupNorm).
        head_convs: Convolutions in each FCOS head tower (RetinaNet's head has 4).
        min_reduction: Backbone levels finer than this stride are not used.
        extra_levels: Add P6 and P7 above the backbone's top level.
        anchor_scale: RetinaNet anchors are `anchor_scale * stride` (x 2^0, 2^1/3, 2^2/3).
        deformable_head: Replace the head towers' 3x3 convolutions by depthwise deformable
            ones with bounded offsets (the FPGA co-design papers, `heads.deformable`).
        deform_max_offset: Offset bound of those convolutions, in feature-map pixels.
        sepc_pconvs: Pyramid convolutions stacked by the SEPC neck.
        sepc_deformable: Scale-equalizing deformable kernels in SEPC (False: plain PConv).
        sepc_integrated_bn: Integrated batch normalisation in SEPC.
        score_thresh: Detections below this score are dropped before NMS.
        nms_thresh: IoU threshold of the class-wise NMS.
        detections_per_img: Detections kept per image.
        plot_samples: Test images shown in the prediction figure.
        plot_score: Smallest score drawn in the figure.
        **kwargs: See `BaseTask`.
    """

    name = "detection"
    monitor: ClassVar[str] = "val/map_50"
    mode: ClassVar[str] = "max"
    main_metric: ClassVar[str] = "test/map_50"

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        image_size: int = 128,
        head: Head = "fcos",
        neck: Neck = "fpn",
        fpn_channels: int = 64,
        head_convs: int = 4,
        min_reduction: int = 8,
        extra_levels: bool = True,
        anchor_scale: float = 4.0,
        deformable_head: bool = False,
        deform_max_offset: float = 2.0,
        sepc_pconvs: int = 4,
        sepc_deformable: bool = True,
        sepc_integrated_bn: bool = True,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        plot_samples: int = 8,
        plot_score: float = 0.3,
        **kwargs,
    ):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        hp = self.hparams
        pyramid = feature_pyramid(self.create_backbone, hp.backbone, self.name, hp.min_reduction)
        sepc = None
        if hp.neck == "sepc":
            sepc = SEPC(hp.fpn_channels, hp.sepc_pconvs, hp.sepc_deformable, hp.sepc_integrated_bn)
        elif hp.neck != "fpn":
            raise ValueError(f"task.neck must be 'fpn' or 'sepc', got {hp.neck!r}")
        neck = PyramidNeck(pyramid, hp.fpn_channels, hp.extra_levels, sepc)
        levels = len(neck.strides)
        # images arrive normalised and sized: the transform must neither re-normalise nor resize
        common = dict(
            min_size=hp.image_size, max_size=hp.image_size, size_divisible=1,
            image_mean=[0.0] * hp.in_chans, image_std=[1.0] * hp.in_chans,
            score_thresh=hp.score_thresh, nms_thresh=hp.nms_thresh,
            detections_per_img=hp.detections_per_img,
        )  # fmt: skip
        match hp.head:
            case "fcos":
                # FCOS anchors are points; their size is the level's stride (torchvision's
                # FCOS reads it to assign objects to levels)
                anchors = AnchorGenerator(tuple((s,) for s in neck.strides), ((1.0,),) * levels)
                head = FCOSHead(hp.fpn_channels, 1, self.num_classes, hp.head_convs)
                detector = FCOS(neck, self.num_classes, anchor_generator=anchors, head=head,
                                **common)  # fmt: skip
            case "retinanet":
                octaves = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
                sizes = tuple(tuple(hp.anchor_scale * s * o for o in octaves) for s in neck.strides)
                anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * levels)
                head = RetinaNetHead(hp.fpn_channels, anchors.num_anchors_per_location()[0],
                                     self.num_classes, norm_layer=group_norm)  # fmt: skip
                detector = RetinaNet(neck, self.num_classes, anchor_generator=anchors, head=head,
                                     **common)  # fmt: skip
            case other:
                raise ValueError(f"task.head must be 'fcos' or 'retinanet', got {other!r}")
        if hp.deformable_head:
            deformable_towers(detector.head, hp.deform_max_offset)
        self.detector = detector

    def configure_metrics(self) -> None:
        def make() -> MeanAveragePrecision:
            return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                        backend="pycocotools")  # fmt: skip

        self.val_map, self.test_map = make(), make()

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        """Training (with `targets`): the loss dict. Evaluation: one dict of boxes, scores and
        labels per image."""
        return self.detector(list(images), targets)

    @staticmethod
    def _targets(batch: dict) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": b, "labels": lab} for b, lab in zip(batch["boxes"], batch["labels"])]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self(batch["image"], self._targets(batch))
        loss = sum(losses.values())
        n = len(batch["image"])
        self.log("train/loss", loss, batch_size=n, prog_bar=True)
        self.log_dict({f"train/loss_{k}": v for k, v in losses.items()}, batch_size=n)
        return self.check_finite(loss)

    def _evaluate(self, batch: dict, metric: MeanAveragePrecision) -> list[dict]:
        detections = self(batch["image"])
        metric.update(detections, self._targets(batch))
        return detections

    def _log_map(self, split: str, metric: MeanAveragePrecision) -> None:
        if metric.update_count == 0:
            return
        result = metric.compute()
        values = {f"{split}/{k}": result[k] for k in ("map", "map_50", "map_75")}
        per_class = dict(zip(result["classes"].reshape(-1).tolist(),
                             result["map_per_class"].reshape(-1)))  # fmt: skip
        for label, name in enumerate(self.class_names):
            # a class absent from the split's ground truth has no AP: reported as -1
            values[f"{split}/ap_{name}"] = per_class.get(label, torch.tensor(-1.0))
        headline = values.pop(f"{split}/map_50")
        self.log(f"{split}/map_50", headline.float(), prog_bar=split == "val")
        self.log_dict({k: v.float() for k, v in values.items()})
        metric.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_map)

    def on_validation_epoch_end(self) -> None:
        self._log_map("val", self.val_map)

    def on_test_epoch_start(self) -> None:
        self._shown: list[tuple[np.ndarray, dict, dict]] = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        detections = self._evaluate(batch, self.test_map)
        datamodule = getattr(self.trainer, "datamodule", None)
        take = self.hparams.plot_samples - len(self._shown)
        if take > 0 and hasattr(datamodule, "denormalize"):
            images = datamodule.denormalize(batch["image"][:take])
            truths = self._targets(batch)[:take]
            self._shown += zip(images, [{k: v.cpu() for k, v in t.items()} for t in truths],
                               [{k: v.cpu() for k, v in d.items()} for d in detections[:take]])  # fmt: skip

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)
        if self._shown:
            figure = boxes_figure(self._shown, self.class_names, self.hparams.plot_score)
            self.log_figure("test/predictions", figure)

    def write_predictions(self, inputs: "PredictionInputs", out_dir: Path) -> list[Path]:
        """`detections.json`: COCO results format (`image_id`, `category_id`, `bbox` as
        [x, y, width, height] in the input's pixels, `score`), each with its `file_name` and
        `category_name`; `image_id` is the input's position in the sorted inputs and
        `category_id` the class index. `boxes/<name>.png`: boxes scoring >= `plot_score` drawn.
        """
        transform = inputs.transform()
        colours = [
            tuple(c)
            for c in (plt.get_cmap("tab10")(np.arange(10))[:, :3] * 255).astype(int).tolist()
        ]
        results = []
        for image_id, files in enumerate(inputs.batches(1)):
            image = inputs.read_image(files[0])
            height, width = image.shape[:2]
            # the transform fits the longest side and pads at the bottom/right, so boxes only
            # scale back; a mask of ones shows where the image landed
            sample = transform(image=image, mask=np.ones((height, width), np.uint8),
                               bboxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))  # fmt: skip
            rows, cols = np.nonzero(np.asarray(sample["mask"]) == 1)
            scale = torch.tensor([width / (cols.max() + 1), height / (rows.max() + 1)] * 2)
            detected = self(sample["image"][None].to(self.device))[0]
            # a box may reach into the padding: clip it to the image, drop it if nothing is left
            boxes = detected["boxes"].cpu() * scale
            boxes = torch.min(boxes.clamp_min(0), torch.tensor([width, height] * 2))
            keep = ((boxes[:, 2:] - boxes[:, :2]) > 0).all(1)
            detected = {k: v[keep.to(v.device)] for k, v in detected.items()}
            boxes = boxes[keep].tolist()
            drawn = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).convert(
                "RGB"
            )
            draw = ImageDraw.Draw(drawn)
            for (x0, y0, x1, y1), label, score in zip(boxes, detected["labels"].tolist(),
                                                      detected["scores"].tolist()):  # fmt: skip
                name = self.class_names[label]
                results.append({
                    "image_id": image_id, "category_id": label,
                    "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "score": round(score, 4), "file_name": inputs.name(files[0]),
                    "category_name": name,
                })  # fmt: skip
                if score >= self.hparams.plot_score:
                    colour = colours[label % 10]
                    draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
                    draw.text((x0 + 2, y0 + 1), f"{name} {score:.2f}", fill=colour)
            drawn.save(inputs.output_path(out_dir / "boxes", files[0]))
        path = out_dir / "detections.json"
        path.write_text(json.dumps(results, indent=1))
        return [path, out_dir / "boxes"]

    def export_module(self) -> nn.Module:
        return DetectorNetwork(self.detector)

    def export_outputs(self) -> dict[str, str]:
        names = {
            "cls_logits": "(B, A, num_classes) class scores of every anchor of every level",
            "bbox_regression": "(B, A, 4) box offsets of every anchor (torchvision's box coder)",
            "bbox_ctrness": "(B, A, 1) FCOS centre-ness of every anchor point",
        }
        kept = ("cls_logits", "bbox_regression") + (
            ("bbox_ctrness",) if self.hparams.head == "fcos" else ()
        )
        notes = (
            f"anchors: torchvision's AnchorGenerator over the levels of strides "
            f"{self.detector.backbone.strides}; decoding and NMS as torchvision's "
            f"{type(self.detector).__name__}.postprocess_detections (score_thresh "
            f"{self.hparams.score_thresh}, nms_thresh {self.hparams.nms_thresh})"
        )
        return {k: f"{names[k]}; {notes}" for k in kept}


class DetectorNetwork(nn.Module):
    """A torchvision one-stage detector up to its head's raw outputs.

    Anchor decoding and NMS are data-dependent loops that the exporters do not trace; the export
    stops before them and model.json says how to finish (the output descriptions).
    """

    def __init__(self, detector: FCOS | RetinaNet):
        super().__init__()
        self.backbone, self.head = detector.backbone, detector.head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.head(list(self.backbone(images).values()))
        return tuple(
            outputs[k] for k in ("cls_logits", "bbox_regression", "bbox_ctrness") if k in outputs
        )


def boxes_figure(samples: list[tuple[np.ndarray, dict, dict]], class_names: Sequence[str],
                 min_score: float) -> plt.Figure:  # fmt: skip
    """Test images with predicted boxes (class colour, `name score`) over dashed ground truth."""
    colours = plt.get_cmap("tab10")(np.arange(len(class_names)) % 10)
    columns = min(4, len(samples))
    rows = -(-len(samples) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, truth, predicted) in zip(axes.flat, samples):
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
        for x0, y0, x1, y1 in truth["boxes"].tolist():
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=0.8,
                                   ec="white"))  # fmt: skip
        for box, label, score in zip(predicted["boxes"].tolist(), predicted["labels"].tolist(),
                                     predicted["scores"].tolist()):  # fmt: skip
            if score < min_score:
                continue
            x0, y0, x1, y1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2,
                                   ec=colours[label]))  # fmt: skip
            ax.text(x0, y0, f"{class_names[label]} {score:.2f}", fontsize=6, va="bottom",
                    color="black", bbox=dict(fc=colours[label], ec="none", pad=0.5, alpha=0.8))  # fmt: skip
    figure.tight_layout()
    return figure
