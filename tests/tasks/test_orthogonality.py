"""The orthogonality regulariser: zero exactly on orthogonal convolutions, and it trains."""

import torch
import torch.nn.functional as F

import train
from tasks.orthogonality import orthogonality_loss


def _circular_conv(x, weight, stride=1):
    k = weight.shape[-1]
    return F.conv2d(F.pad(x, [k // 2] * 4, mode="circular"), weight, stride=stride)


def test_zero_on_an_orthogonal_1x1_and_positive_otherwise():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert orthogonality_loss(q[:, :, None, None]).abs() < 1e-10
    assert orthogonality_loss(2 * q[:, :, None, None]) > 1


def test_column_case_zero_on_an_isometry():
    """M = 2C, stride 1: [I; 0] keeps norms (column orthogonal) and must score zero."""
    weight = torch.zeros(8, 4, 3, 3, dtype=torch.float64)
    weight[torch.arange(4), torch.arange(4), 1, 1] = 1
    assert orthogonality_loss(weight).abs() < 1e-10


def test_minimising_it_makes_a_3x3_conv_norm_preserving():
    """From a perturbed identity (the landscape has other local minima, as the paper studies)."""
    torch.manual_seed(0)
    identity = torch.zeros(4, 4, 3, 3, dtype=torch.float64)
    identity[torch.arange(4), torch.arange(4), 1, 1] = 1
    weight = (identity + 0.15 * torch.randn_like(identity)).requires_grad_()
    x = torch.randn(3, 4, 16, 16, dtype=torch.float64)
    before = _circular_conv(x, weight.detach()).norm() / x.norm()
    optimizer = torch.optim.LBFGS([weight], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = orthogonality_loss(weight)
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
    after = _circular_conv(x, weight.detach()).norm() / x.norm()
    assert orthogonality_loss(weight.detach()) < 1e-6
    assert abs(before - 1) > 0.05 and abs(after - 1) < 1e-3  # now an isometry (circular padding)


def test_switch_on_from_the_config(make_cfg, tmp_path):
    results = train.run(
        make_cfg(
            "callbacks=orthogonal",
            "backbone=timm",
            "backbone.name=resnet18",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.log_every_n_steps=1",
            "data.batch_size=8",
            logger="csv",
        )  # fmt: skip
    )
    assert "test/acc" in results["metrics"]
    assert "train/orth" in next((tmp_path / "csv").rglob("metrics.csv")).read_text()
