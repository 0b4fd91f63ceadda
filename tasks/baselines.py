"""The baselines of task=volatility, fitted on the training period and forecasting the same test
samples as the network: the naive guess, HAR-RV, GARCH(1,1) and an MLP on the raw window.

- naive: the next interval's volatility is the current one (the seed paper's "naive guess").
- HAR-RV: `Corsi, A Simple Approximate Long-Memory Model of Realized Volatility` (J. Financial
  Econometrics 2009): least squares of log RV_{t+1} on log RV_t and its means over the last 5 and
  22 intervals ("daily, weekly, monthly"), in logs as Andersen, Bollerslev and Diebold (2007).
- GARCH(1,1): `Bollerslev, Generalized Autoregressive Conditional Heteroskedasticity` (J.
  Econometrics 1986), fitted by the `arch` package on the interval returns of the training period
  only, then filtered over the whole series with those parameters: one-step-ahead forecasts.
- MLP: scikit-learn's MLPRegressor on the window's raw per-sub-interval order-flow features
  (returns, volumes, counts, depths; flattened) and the hand-crafted features (the paper's "MLP
  on raw data"), regressing the standardised log-variance.

Every function returns predicted volatilities (not variances) for `samples`: sample j predicts
interval j + 1 from intervals up to j, in the datamodule's active-interval order.
"""

import warnings

import numpy as np

__all__ = ["fit_baselines", "garch_forecast", "har_forecast", "mlp_forecast", "naive_forecast"]


def naive_forecast(rv: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The current interval's realised volatility."""
    return rv[samples]


def har_design(
    log_rv: np.ndarray, samples: np.ndarray, lags: tuple[int, ...] = (1, 5, 22)
) -> np.ndarray:
    """[1, mean of log RV over the last `lag` intervals for each lag] at each sample."""
    cumulative = np.concatenate([[0.0], np.cumsum(log_rv)])
    columns = [np.ones(len(samples))]
    for lag in lags:
        lo = np.maximum(samples + 1 - lag, 0)
        columns.append((cumulative[samples + 1] - cumulative[lo]) / (samples + 1 - lo))
    return np.stack(columns, 1)


def har_forecast(rv: np.ndarray, train: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Log HAR-RV fitted by least squares on the training samples."""
    log_rv = np.log(rv)
    coefficients, *_ = np.linalg.lstsq(har_design(log_rv, train), log_rv[train + 1], rcond=None)
    return np.exp(har_design(log_rv, samples) @ coefficients)


def garch_forecast(returns: np.ndarray, train: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """GARCH(1,1) with zero mean, fitted on the returns up to the last training target."""
    from arch import arch_model

    last_obs = int(train[-1]) + 2  # the training targets' intervals, and nothing after them
    # arch's optimiser is happiest with returns of unit scale (it warns otherwise)
    scale = 1.0 / (returns[:last_obs].std() + 1e-12)
    model = arch_model(returns * scale, mean="Zero", vol="GARCH", p=1, q=1, rescale=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny samples (the test grid)
        fitted = model.fit(last_obs=last_obs, disp="off")
        # row i of a one-step forecast from `start=0` is the variance of interval i + 1
        variance = fitted.forecast(horizon=1, start=0, reindex=True).variance.to_numpy()[:, 0]
    return np.sqrt(variance[samples]) / scale


def mlp_forecast(
    train_inputs: np.ndarray,
    train_rv: np.ndarray,
    inputs: np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """An MLP on the raw windows (already standardised by the datamodule), log-variance target."""
    from sklearn.neural_network import MLPRegressor

    log_var = 2 * np.log(train_rv)
    mean, std = log_var.mean(), log_var.std() + 1e-9
    mlp = MLPRegressor(
        hidden_layer_sizes=(64, 32),
        alpha=1e-2,
        learning_rate_init=1e-3,
        max_iter=200,
        # a tenth of the training period decides when to stop: a few dozen epochs, not 200
        early_stopping=True,
        n_iter_no_change=5,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached on tiny samples
        mlp.fit(train_inputs, (log_var - mean) / std)
    return np.exp(0.5 * (mean + std * mlp.predict(inputs)))


def fit_baselines(
    data: dict[str, np.ndarray], split: str = "test", seed: int = 0
) -> dict[str, np.ndarray]:
    """Every baseline's forecasts for the samples of `split`.

    Args:
        data: `VolatilityDataModule.baseline_inputs()`: `rv`, `returns`, `<split>_samples` and
            `<split>_inputs` (flattened windows + hand-crafted features).
        split: The split to forecast.
        seed: Seed of the MLP.
    """
    rv, train, samples = data["rv"], data["train_samples"], data[f"{split}_samples"]
    return {
        "naive": naive_forecast(rv, samples),
        "har": har_forecast(rv, train, samples),
        "garch": garch_forecast(data["returns"], train, samples),
        "mlp": mlp_forecast(data["train_inputs"], rv[train + 1], data[f"{split}_inputs"], seed),
    }
