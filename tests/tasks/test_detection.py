"""The detection task: torchvision detectors over the pyramid, SEPC, bounded deformable convs."""

import pytest
import timm
import torch
import torch.nn.functional as F

import train
from tasks.detection import DetectionTask
from tasks.heads import IncompatibleBackboneError
from tasks.heads.deformable import BoundedDeformableConv2d, deformable_towers
from tasks.heads.sepc import SEPC, IntegratedBatchNorm

BACKBONE = dict(backbone="inception_next_atto", in_chans=3, image_size=64, fpn_channels=32)


def _targets():
    return [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no object
    ]


@pytest.mark.parametrize("head, neck", [("fcos", "fpn"), ("retinanet", "fpn"), ("fcos", "sepc")])
def test_detectors_train_and_predict(head, neck):
    task = DetectionTask(
        num_classes=3, head=head, neck=neck, head_convs=1, sepc_pconvs=1, **BACKBONE
    )
    images = torch.randn(2, 3, 64, 64)
    task.train()
    losses = task(images, _targets())
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) >= 2
    sum(losses.values()).backward()
    task.eval()
    with torch.no_grad():
        detections = task(images)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}


def test_levels_strides_and_anchors_follow_the_backbone():
    task = DetectionTask(num_classes=2, **BACKBONE)
    neck = task.detector.backbone
    assert neck.strides == [8, 16, 32, 64, 128]  # C3-C5 of the backbone, then P6, P7
    assert task.detector.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    features = neck(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in features.values()] == [8, 4, 2, 1, 1]


def test_images_are_neither_normalised_twice_nor_resized():
    task = DetectionTask(num_classes=2, **BACKBONE).eval()
    images = torch.randn(2, 3, 64, 64)
    batched, _ = task.detector.transform(list(images))
    assert batched.image_sizes == [(64, 64), (64, 64)]
    assert torch.allclose(batched.tensors, images, atol=1e-5)


def test_backbone_without_feature_pyramid_is_refused(monkeypatch):
    monkeypatch.setattr(timm, "create_model", lambda name, **kw: (_ for _ in ()).throw(
        RuntimeError("features_only not implemented")))  # fmt: skip
    with pytest.raises(IncompatibleBackboneError, match=r"'bar' cannot serve task=detection"):
        DetectionTask(num_classes=2, backbone="bar")


def test_integrated_bn_pools_statistics_over_all_levels():
    norm = IntegratedBatchNorm(4).train()
    levels = [torch.randn(2, 4, 8, 8) + 3, torch.randn(2, 4, 4, 4) - 5, torch.randn(2, 4, 2, 2)]
    out = norm(levels)
    assert [o.shape for o in out] == [x.shape for x in levels]
    pooled = torch.cat([o.transpose(0, 1).reshape(4, -1) for o in out], 1)
    assert (
        pooled.mean(1).abs().max() < 1e-5 and (pooled.var(1, unbiased=False) - 1).abs().max() < 1e-3
    )
    assert out[0].mean() > 0.5 and out[1].mean() < -0.5  # each level keeps its offset


def test_sepc_keeps_shapes_and_deforms_only_above_the_finest_level():
    torch.manual_seed(0)
    sepc = SEPC(8, num_pconvs=1).eval()
    levels = [torch.randn(1, 8, s, s) for s in (16, 8, 4, 2)]
    before = sepc(levels)
    assert [b.shape for b in before] == [x.shape for x in levels]
    pconv = sepc.pconvs[0]
    with torch.no_grad():  # move every offset: only levels >= 1 sample deformably
        for conv in (pconv.same, pconv.from_finer, pconv.from_coarser):
            conv.offset.bias.fill_(0.7)
    after = sepc(levels)
    # every kernel of output level 0 is regular (scale equalisation starts at level 1)
    assert torch.allclose(before[0], after[0], atol=1e-6)
    assert not torch.allclose(before[1], after[1], atol=1e-4)


def test_bounded_deformable_conv_starts_depthwise_separable_and_stays_bounded():
    torch.manual_seed(0)
    conv = BoundedDeformableConv2d(6, 8, max_offset=1.5)
    x = torch.randn(2, 6, 10, 10)
    separable = F.conv2d(F.conv2d(x, conv.pointwise.weight), conv.weight, conv.bias, padding=1,
                         groups=8)  # fmt: skip
    assert torch.allclose(conv(x), separable, atol=1e-5)
    with torch.no_grad():
        conv.offset.weight.normal_(0, 100)
    offsets = conv.offsets(conv.pointwise(x))
    assert offsets.abs().max() <= 1.5 and offsets.abs().max() > 1.4
    conv.zero_grad()
    with torch.no_grad():
        conv.offset.weight.normal_(0, 0.1)
    conv(x).square().sum().backward()
    assert conv.offset.weight.grad.abs().sum() > 0  # the sampling positions learn


def test_deformable_head_replaces_the_tower_convs():
    task = DetectionTask(num_classes=2, head_convs=2, deformable_head=True, **BACKBONE)
    deformable = [m for m in task.detector.head.modules() if isinstance(m, BoundedDeformableConv2d)]
    assert len(deformable) == 4  # 2 convs x (classification, regression) towers
    retina = DetectionTask(num_classes=2, head="retinanet", **BACKBONE).detector.head
    assert deformable_towers(retina, 2.0) == 8  # RetinaNet: 4 convs per tower
    task.train()
    losses = task(torch.randn(2, 3, 64, 64), _targets())
    assert torch.isfinite(sum(losses.values()))


def test_map_metric_perfect_and_missed():
    task = DetectionTask(num_classes=2, **BACKBONE)
    truth = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]),
            "labels": torch.tensor([0, 1]),
        }
    ]
    perfect = [{**truth[0], "scores": torch.tensor([0.9, 0.8])}]
    task.test_map.update(perfect, truth)
    result = task.test_map.compute()
    assert result["map_50"] == 1 and result["map"] == 1
    task.test_map.reset()
    half = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10]]),
            "labels": torch.tensor([0]),
            "scores": torch.tensor([0.9]),
        }
    ]
    task.test_map.update(half, truth)
    result = task.test_map.compute()
    assert result["map_per_class"].tolist() == [1.0, 0.0]


def test_train_run_logs_map_and_pictures(make_cfg, tmp_path):
    results = train.run(make_cfg("task=detection", "debug=fdr", "data.train_size=8",
                                 "data.val_size=4", "data.test_size=4", "data.image_size=64",
                                 "data.batch_size=4"))  # fmt: skip
    assert results["main_metric"] == "test/map_50"
    assert {"test/map", "test/map_50", "test/map_75", "test/ap_ring"} <= set(results["metrics"])
    assert (tmp_path / "figures" / "test_predictions.png").is_file()
