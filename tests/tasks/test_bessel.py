"""log I_v and log K_v against SciPy (and mpmath where SciPy's own formula loses digits)."""

import mpmath
import numpy as np
import pytest
import scipy.special as sp
import torch

from tasks.bessel import fit_vmf_concentration, log_bessel_iv, log_bessel_kv, vmf_log_normalizer

ORDERS = np.array([0, 0.3, 0.5, 1, 2.5, 5, 9.9, 10, 10.5, 15, 30, 100, 255, 1000, 4096, 16384])
ARGS = np.array([1e-300, 1e-30, 1e-5, 1e-3, 0.1, 0.5, 1, 2, 5, 10, 20, 49.9, 50.1, 80, 100, 300,
                 1000, 5000, 1e4, 3e4, 1e5])  # fmt: skip


def _grid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    v, x = (a.ravel() for a in np.meshgrid(ORDERS, ARGS, indexing="ij"))
    # plus random log-uniform orders in [0, 16384] and arguments in [1e-6, 1e5]
    v = np.concatenate([v, np.exp(rng.uniform(np.log(1e-3), np.log(16384), 3000))])
    x = np.concatenate([x, np.exp(rng.uniform(np.log(1e-6), np.log(1e5), 3000))])
    return v, x


def _scipy_log_iv(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(sp.ive(v, x)) + x


def _scipy_log_kv(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(sp.kve(v, x)) - x


@pytest.mark.parametrize(
    ("ours", "scipy_log"), [(log_bessel_iv, _scipy_log_iv), (log_bessel_kv, _scipy_log_kv)]
)
def test_matches_scipy_where_scipy_is_finite_and_stays_finite_elsewhere(ours, scipy_log):
    v, x = _grid(np.random.default_rng(0))
    got = ours(torch.tensor(v), torch.tensor(x)).numpy()
    want = scipy_log(v, x)
    finite = np.isfinite(want)
    assert (~finite).sum() > 50  # SciPy under/overflows on part of the grid...
    assert np.isfinite(got).all()  # ...we do not
    # `log(ive(v, x)) + x` itself rounds to about 1e-16 * (1 + x) absolutely: where the result
    # is near 0 (I_0 of a small x) SciPy's value has no relative accuracy left (see mpmath test)
    tolerance = 1e-10 * np.abs(want[finite]) + 4e-16 * (1 + x[finite])
    np.testing.assert_array_less(np.abs(got[finite] - want[finite]), tolerance + 1e-300)


@pytest.mark.parametrize(("v", "x"), [(0, 1e-10), (0, 1e-3), (0.5, 1e-200), (5000, 100.0),
                                      (255, 3000.0), (3.5, 1e-290), (20000, 1e-3)])  # fmt: skip
def test_matches_mpmath_where_scipy_cannot(v, x):
    mpmath.mp.dps = 40
    want_i = float(mpmath.log(mpmath.besseli(v, mpmath.mpf(x))))
    want_k = float(mpmath.log(mpmath.besselk(v, mpmath.mpf(x))))
    got_i = log_bessel_iv(v, torch.tensor(x, dtype=torch.float64)).item()
    got_k = log_bessel_kv(v, torch.tensor(x, dtype=torch.float64)).item()
    assert got_i == pytest.approx(want_i, rel=1e-10, abs=1e-300)
    assert got_k == pytest.approx(want_k, rel=1e-10)


def test_gradients_match_finite_differences_and_recurrences():
    v = torch.tensor([0.0, 0.5, 3.0, 12.0, 255.0, 4000.0], dtype=torch.float64)
    x = torch.tensor([0.2, 7.0, 60.0, 30.0, 400.0, 9000.0], dtype=torch.float64, requires_grad=True)
    for fn in (log_bessel_iv, log_bessel_kv):
        assert torch.autograd.gradcheck(lambda x, fn=fn: fn(v, x), (x,))
        assert torch.autograd.gradgradcheck(lambda x, fn=fn: fn(v, x), (x,))


def test_zero_argument_and_float32():
    assert log_bessel_iv(0.0, torch.tensor(0.0)).item() == 0.0
    assert log_bessel_iv(2.0, torch.tensor(0.0)).item() == float("-inf")
    assert log_bessel_kv(2.0, torch.tensor(0.0)).item() == float("inf")
    got = log_bessel_iv(255.0, torch.tensor([500.0], dtype=torch.float32))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(_scipy_log_iv(255.0, 500.0), rel=1e-5)
    with pytest.raises(ValueError, match="v >= 0"):
        log_bessel_iv(-1.0, torch.tensor(1.0))


def test_vmf_normalizer_integrates_to_one_on_the_circle_and_fit_recovers_kappa():
    kappa = torch.tensor([0.5, 4.0, 40.0], dtype=torch.float64)
    theta = torch.linspace(-np.pi, np.pi, 20001, dtype=torch.float64)
    density = torch.exp(vmf_log_normalizer(kappa, 2)[:, None] + kappa[:, None] * torch.cos(theta))
    assert torch.allclose(torch.trapezoid(density, theta), torch.ones(3, dtype=torch.float64))
    for dim in (3, 512):
        true = torch.tensor([5.0, 200.0, 3000.0], dtype=torch.float64)
        order = dim / 2 - 1
        r = torch.exp(log_bessel_iv(order + 1, true) - log_bessel_iv(order, true))
        assert torch.allclose(fit_vmf_concentration(r, dim), true, rtol=1e-8)
