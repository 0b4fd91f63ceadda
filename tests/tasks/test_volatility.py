"""Volatility task: metrics, losses, baselines on the same targets, figures, refusals."""

import json

import numpy as np
import pytest
import torch

import train
from data.volatility import SimulatedOrderFlowDataModule
from tasks.baselines import fit_baselines, har_design
from tasks.volatility import QLike, RootMeanSquaredPercentageError, VolatilityTask


def test_rmspe_and_qlike_definitions():
    realised = torch.tensor([1.0, 2.0, 4.0])
    predicted = torch.tensor([1.5, 2.0, 2.0])
    rmspe = RootMeanSquaredPercentageError()
    rmspe.update(predicted, realised)
    assert rmspe.compute().item() == pytest.approx(np.sqrt((0.25 + 0 + 0.25) / 3))
    qlike = QLike()
    qlike.update(realised, realised)
    assert qlike.compute().item() == pytest.approx(0.0, abs=1e-7)
    qlike.update(predicted, realised)
    assert qlike.compute().item() > 0


@pytest.mark.parametrize("loss", ["mse_log_var", "qlike"])
def test_task_forward_with_and_without_features(loss):
    task = VolatilityTask(backbone="resnet18", in_chans=5, num_features=6, target_mean=-12.0,
                          target_std=1.0, loss=loss)  # fmt: skip
    image, features = torch.randn(2, 5, 32, 32), torch.randn(2, 6)
    assert task(image, features).shape == (2,)
    assert task(image).shape == (2,)  # GMAC counting calls forward(image) alone
    output = task(image, features)
    loss_value = task.loss(output, torch.tensor([2e-3, 3e-3]))
    loss_value.backward()
    assert torch.isfinite(loss_value)


def test_sequence_backbone_needs_sequences():
    with pytest.raises(ValueError, match="1D sequence model but data.representation='image'"):
        VolatilityTask(backbone="test_metaformer_1d", in_chans=5, representation="image")
    with pytest.raises(ValueError, match="2D image backbone but data.representation='sequence'"):
        VolatilityTask(backbone="resnet18", in_chans=9, representation="sequence")
    task = VolatilityTask(
        backbone="test_metaformer_1d", in_chans=9, num_features=6, representation="sequence"
    )
    assert task(torch.randn(2, 9, 32)).shape == (2,)


def test_baselines_on_the_same_samples():
    dm = SimulatedOrderFlowDataModule(intervals=400)
    data = dm.baseline_inputs()
    forecasts = fit_baselines(data, "test", seed=0)
    n = len(data["test_samples"])
    assert set(forecasts) == {"naive", "har", "garch", "mlp"}
    for values in forecasts.values():
        assert values.shape == (n,) and np.isfinite(values).all() and (values > 0).all()
    np.testing.assert_array_equal(forecasts["naive"], data["rv"][data["test_samples"]])
    # HAR's regressors at a sample are the means of log RV over 1, 5, 22 intervals up to it
    log_rv = np.log(data["rv"])
    row = har_design(log_rv, np.array([30]))[0]
    np.testing.assert_allclose(row, [1, log_rv[30], log_rv[26:31].mean(), log_rv[9:31].mean()])


def test_train_writes_baselines_and_figures(make_cfg, tmp_path):
    cfg = make_cfg("task=volatility", "backbone=timm", "backbone.name=resnet10t", "data.intervals=200",
                   "data.batch_size=16", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                   "trainer.limit_train_batches=2")  # fmt: skip
    results = train.run(cfg)
    assert results["main_metric"] == "test/rmspe"
    metrics = results["metrics"]
    for name in ("naive", "har", "garch", "mlp"):
        assert np.isfinite(metrics[f"test/{name}/rmspe"])
    assert set(results["baselines"]) == {"naive", "har", "garch", "mlp"}
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["baselines"]["naive"]["rmspe"] == pytest.approx(metrics["test/naive/rmspe"])
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {
        "test_volatility_over_time.png",
        "test_predicted_vs_realised.png",
        "test_order_flow.png",
    } <= figures
