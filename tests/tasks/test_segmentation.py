"""The segmentation task: pyramid levels, decoders, losses, skeletons, metrics, refusals."""

import cv2
import numpy as np
import pytest
import timm
import torch
from skimage.measure import euler_number

import train
from tasks.heads import FPNDecoder, IncompatibleBackboneError, UPerNetDecoder, distinct_levels
from tasks.heads.skeleton import ClDiceLoss, SoftSkeletonize
from tasks.segmentation import SegmentationLoss, SegmentationTask


def test_distinct_levels_keep_the_deepest_of_each_stride():
    assert distinct_levels([4, 8, 16, 32]) == [0, 1, 2, 3]
    assert distinct_levels([2, 4, 8, 16, 32], min_reduction=4) == [1, 2, 3, 4]
    assert distinct_levels([16, 16, 16]) == [2]  # isotropic (ConViT): the last block
    assert distinct_levels([2], min_reduction=4) == [0]  # never empty


@pytest.mark.parametrize("decoder", [FPNDecoder, UPerNetDecoder])
@pytest.mark.parametrize(
    "channels, reductions",
    [([16, 24, 32, 48], [4, 8, 16, 32]), ([96, 192], [12, 17]), ([192], [16])],
)
def test_decoders_give_logits_at_the_input_size(decoder, channels, reductions):
    size = (60, 68)
    features = [
        torch.randn(2, c, -(-size[0] // r), -(-size[1] // r)) for c, r in zip(channels, reductions)
    ]
    head = decoder(channels, num_classes=5, channels=32)
    logits = head(features, size)
    assert logits.shape == (2, 5, *size)
    logits.sum().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)


def test_task_forward_and_in_chans():
    task = SegmentationTask(num_classes=3, backbone="inception_next_atto", in_chans=1,
                            decoder="upernet", decoder_channels=32)  # fmt: skip
    assert task.backbone.reductions == [4, 8, 16, 32]
    assert task(torch.randn(2, 1, 64, 64)).shape == (2, 3, 64, 64)


def test_backbone_without_feature_pyramid_is_refused(monkeypatch):
    def no_features(name, **kwargs):
        if kwargs.get("features_only"):
            raise RuntimeError("features_only not implemented for Foo models")
        return torch.nn.Identity()

    monkeypatch.setattr(timm, "create_model", no_features)
    with pytest.raises(IncompatibleBackboneError, match=r"backbone 'foo_net' cannot serve "
                       r"task=segmentation.*features_only not implemented for Foo"):  # fmt: skip
        SegmentationTask(num_classes=2, backbone="foo_net")


def test_metrics_known_values_and_ignore():
    task = SegmentationTask(num_classes=2, backbone="inception_next_atto")
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 255]]])
    predicted = torch.tensor([[[0, 0, 1, 0], [0, 0, 1, 1]]])  # one error; the 255 pixel ignored
    task.test_metrics.update(predicted, target)
    task.test_class_iou.update(predicted, target)
    metrics = task.test_metrics.compute()
    # class 0: 4 hits / 5 in the union; class 1: 2 hits / 3 in the union
    assert metrics["test/miou"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert metrics["test/pixel_acc"] == pytest.approx(6 / 7)
    assert metrics["test/dice"] == pytest.approx((8 / 9 + 4 / 5) / 2)
    assert task.test_class_iou.compute().tolist() == pytest.approx([4 / 5, 2 / 3])


def test_loss_ignores_ignored_pixels_and_is_low_when_right():
    loss = SegmentationLoss(3, ignore_index=255)
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :4] = 255
    right = (
        torch.nn.functional.one_hot(torch.where(target == 255, 0, target), 3).permute(0, 3, 1, 2)
        * 20.0
    )
    terms = loss(right.float(), target)
    assert terms["ce"] < 1e-3 and terms["dice"] < 1e-3
    noisy = right.float().clone()
    noisy[:, :, :4] = torch.randn(2, 3, 4, 16) * 50  # only ignored pixels change
    assert loss(noisy, target)["loss"] == pytest.approx(terms["loss"].item(), abs=1e-6)
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        SegmentationLoss(3, class_weights=[1.0, 2.0])


def _shapes() -> np.ndarray:
    image = np.zeros((64, 64), np.uint8)
    cv2.circle(image, (20, 20), 14, 1, -1)
    cv2.circle(image, (20, 20), 6, 0, -1)  # a ring: one hole
    cv2.rectangle(image, (36, 5), (60, 20), 1, -1)
    cv2.line(image, (5, 50), (60, 58), 1, 7)
    return image


def test_skeleton_keeps_topology_and_is_thin():
    image = _shapes()
    skeleton = (
        SoftSkeletonize(iterations=10, probabilistic=False)(
            torch.tensor(image, dtype=torch.float32)[None, None]
        )[0, 0]
        .numpy()
        .astype(np.uint8)
    )
    assert euler_number(skeleton, connectivity=2) == euler_number(image, connectivity=2) == 2
    assert (skeleton <= image).all()
    assert skeleton.sum() < 0.12 * image.sum()
    # thin: no 2x2 block of skeleton pixels is left
    blocks = skeleton[:-1, :-1] & skeleton[1:, :-1] & skeleton[:-1, 1:] & skeleton[1:, 1:]
    assert not blocks.any()


def test_soft_skeleton_passes_gradients():
    probs = torch.full((1, 1, 24, 24), 0.1)
    probs[..., 8:16, 2:22] = 0.9
    probs.requires_grad_(True)
    SoftSkeletonize(iterations=4)(probs).sum().backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def test_cldice_sees_a_break_that_dice_cannot_tell_from_a_harmless_error():
    truth = torch.zeros(1, 1, 32, 32)
    truth[..., 14:18, 2:30] = 1  # a thin bar
    broken, thinned = truth.clone(), truth.clone()
    broken[..., 14:18, 15:17] = 0  # 8 pixels off: the bar is cut in two
    thinned[..., 17, 2:10] = 0  # 8 pixels off its edge: still one bar
    dice = [1 - 2 * (p * truth).sum() / (p.sum() + truth.sum()) for p in (broken, thinned)]
    assert dice[0] == dice[1]
    cldice = ClDiceLoss(iterations=3)
    assert cldice(truth, truth) < 0.01 and cldice(thinned, truth) < 0.01
    assert cldice(broken, truth) > 0.03


def test_cldice_option_adds_the_term():
    loss = SegmentationLoss(3, cldice_weight=0.5, cldice_iterations=2)
    terms = loss(torch.randn(2, 3, 16, 16, requires_grad=True), torch.randint(0, 3, (2, 16, 16)))
    assert set(terms) == {"ce", "dice", "cldice", "loss"}
    terms["loss"].backward()


def test_train_run_logs_metrics_and_pictures(make_cfg, tmp_path):
    results = train.run(make_cfg("task=segmentation", "debug=fdr", "data.train_size=8",
                                 "data.val_size=4", "data.test_size=4", "data.image_size=64",
                                 "data.batch_size=4"))  # fmt: skip
    assert results["main_metric"] == "test/miou"
    assert {"test/miou", "test/dice", "test/pixel_acc", "test/iou_jaws"} <= set(results["metrics"])
    assert (tmp_path / "figures" / "test_predictions.png").is_file()
