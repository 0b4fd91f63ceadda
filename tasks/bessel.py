"""Logarithms of the modified Bessel functions I_v(x) and K_v(x) in torch, and vMF concentration.

`Accurate Computation of the Logarithm of Modified Bessel Functions on GPUs`
    Plesner, Sørensen and Hauberg, ICS 2024, arXiv 2409.08729

The von Mises-Fisher normaliser of a d-dimensional embedding needs log I_{d/2-1}(kappa): with
d = 512 and kappa in the hundreds, I_v itself under- or overflows float64 long before its log
does, and `scipy.special.ive` (the scaled function) returns 0 or inf there too. As in the paper,
log I_v and log K_v are computed directly in log space, choosing per element the expansion that
is accurate where it is evaluated:

- large order (v >= 10): the uniform asymptotic (Debye) expansion in v, valid for every x > 0
  (DLMF 10.41.3-4); its polynomials U_k(p) are generated exactly, in rational arithmetic, by the
  recurrence of DLMF 10.41.9 at import;
- I_v, small order and x <= 50: the power series (DLMF 10.25.2), a sum of positive terms;
- I_v, small order and x > 50: the large-argument expansion (DLMF 10.40.1);
- K_v, small order: the integral K_v(x) = 1/2 \\int exp(-x cosh t + v t) dt over the real line
  (DLMF 10.32.9), a positive integrand whose trapezoidal sum converges exponentially fast,
  summed in log space (log-sum-exp) so that nothing under- or overflows.

torch has no such function (`torch.special` stops at orders 0 and 1), hence this module. Float64
results agree with SciPy's `log(ive(v, x)) + x` and `log(kve(v, x)) - x` to about 1e-13
relative wherever SciPy is finite (tests/tasks/test_bessel.py), for orders up to 16,384 and
arguments up to 1e5, and stay finite where SciPy returns 0 or inf. Both functions are
differentiable in x (to any order, through the recurrences of their derivatives); the order v
is a constant.
"""

import math
from fractions import Fraction

import torch

__all__ = ["log_bessel_iv", "log_bessel_kv", "vmf_log_normalizer", "fit_vmf_concentration"]

#: Orders from which the uniform (Debye) expansion is used.
DEBYE_MIN_ORDER = 10.0
#: Arguments from which I_v of a small order uses the large-argument expansion.
LARGE_X = 50.0
_DEBYE_TERMS = 14
_SERIES_TERMS = 220
_LARGE_X_TERMS = 40


def _debye_polynomials(count: int) -> list[list[Fraction]]:
    """Coefficients (in powers of p) of U_0 .. U_{count-1} of DLMF 10.41.10, exactly.

    U_{k+1}(p) = 1/2 p^2 (1 - p^2) U_k'(p) + 1/8 \\int_0^p (1 - 5 t^2) U_k(t) dt  (DLMF 10.41.9)
    """
    polys = [[Fraction(1)]]
    for _ in range(count - 1):
        u = polys[-1]
        nxt = [Fraction(0)] * (len(u) + 3)
        for power, c in enumerate(u):
            if power:  # 1/2 p^2 (1 - p^2) * power c p^(power-1)
                nxt[power + 1] += Fraction(power, 2) * c
                nxt[power + 3] -= Fraction(power, 2) * c
            # 1/8 integral of (1 - 5 t^2) c t^power
            nxt[power + 1] += c / (8 * (power + 1))
            nxt[power + 3] -= 5 * c / (8 * (power + 3))
        polys.append(nxt)
    return polys


_U = [[float(c) for c in poly] for poly in _debye_polynomials(_DEBYE_TERMS)]


def _polyval(coefficients: list[float], p: torch.Tensor) -> torch.Tensor:
    result = torch.zeros_like(p)
    for c in reversed(coefficients):
        result = result * p + c
    return result


def _log_debye(v: torch.Tensor, x: torch.Tensor, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform expansion: (v*eta, -1/4 log(1 + z^2) + log sum_k sign^k U_k(p) / v^k), z = x/v."""
    z = x / v
    root = torch.sqrt(1 + z * z)  # 1/p
    p = 1 / root
    eta = root + torch.log(z) - torch.log1p(root)
    total = torch.zeros_like(x)
    inv_v = 1 / v
    scale = torch.ones_like(x)
    for coefficients in _U[1:]:
        scale = scale * inv_v * sign
        total = total + scale * _polyval(coefficients, p)
    return v * eta, torch.log1p(total) - 0.25 * torch.log1p(z * z)


def _log_iv_debye(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    exponent, correction = _log_debye(v, x, 1.0)
    return exponent - 0.5 * torch.log(2 * math.pi * v) + correction


def _log_kv_debye(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    exponent, correction = _log_debye(v, x, -1.0)
    return 0.5 * torch.log(math.pi / (2 * v)) - exponent + correction


def _log_iv_series(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log[(x/2)^v / Gamma(v+1)] + log1p(sum_{k>=1} t_k), t_k = t_{k-1} (x/2)^2 / (k (v+k))."""
    quarter_x2 = (x * x) / 4
    term = torch.ones_like(x)
    tail = torch.zeros_like(x)
    for k in range(1, _SERIES_TERMS + 1):
        term = term * quarter_x2 / (k * (v + k))
        tail = tail + term
    return v * torch.log(x / 2) - torch.lgamma(v + 1) + torch.log1p(tail)


def _large_x_sum(v: torch.Tensor, x: torch.Tensor, sign: float) -> torch.Tensor:
    """log of sum_k sign^k a_k(v) / x^k, a_k(v) = prod_{j<=k} (4v^2 - (2j-1)^2) / (8 j)."""
    mu = 4 * v * v
    term = torch.ones_like(x)
    total = torch.zeros_like(x)
    for j in range(1, _LARGE_X_TERMS + 1):
        term = term * sign * (mu - (2 * j - 1) ** 2) / (8 * j * x)
        total = total + term
    return torch.log1p(total)


def _log_iv_large_x(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x - 0.5 * torch.log(2 * math.pi * x) + _large_x_sum(v, x, -1.0)


def _log_kv_integral(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log K_v(x) = log(1/2 * trapezoid of exp(-x cosh t + v t) over t), in log-sum-exp form.

    The integrand is log-concave with its peak at t* = asinh(v/x); the interval [lo, hi] holds
    every node within e^-50 of the peak (by concavity: f'' = -x cosh t <= -x). The step is at
    most 0.25 (error ~ exp(-pi^2 / h) for an integrand analytic in a strip of half-width pi/2)
    and at most half the peak's width 1/sqrt(x cosh t*), as for a Gaussian.
    """
    peak = torch.asinh(v / x)
    spread = torch.sqrt(100 / x)
    hi = torch.minimum(peak + spread, torch.asinh((v + 50) / x) + 1)
    lo = torch.maximum(peak - spread, -torch.asinh(50 / x) - 1)
    step_bound = torch.minimum(torch.full_like(x, 0.25), 0.5 * (x * x + v * v).pow(-0.25))
    nodes = int(torch.ceil(((hi - lo) / step_bound).max()).item()) + 2 if x.numel() else 2
    grid = torch.linspace(0, 1, nodes, dtype=x.dtype, device=x.device)
    t = lo[..., None] + (hi - lo)[..., None] * grid
    step = (hi - lo) / (nodes - 1)
    integrand = -x[..., None] * torch.cosh(t) + v[..., None] * t
    return torch.logsumexp(integrand, dim=-1) + torch.log(step) - math.log(2)


def _pick(mask: torch.Tensor, safe: float, x: torch.Tensor) -> torch.Tensor:
    # every branch is evaluated on values inside its domain only, so that no inf/NaN of an
    # unused branch leaks into the result (or into gradients)
    return torch.where(mask, x, torch.full_like(x, safe))


def _log_iv_forward(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    large_order = v >= DEBYE_MIN_ORDER
    positive = x > 0
    debye = large_order & positive
    series = ~large_order & positive & (x <= LARGE_X)
    asymptotic = ~large_order & (x > LARGE_X)
    out = torch.full_like(x, -math.inf)
    out = torch.where(x == 0, torch.where(v == 0, 0.0, -math.inf), out).to(x.dtype)
    if debye.any():
        vals = _log_iv_debye(v[debye], x[debye])
        out = out.masked_scatter(debye, vals)
    if series.any():
        out = out.masked_scatter(series, _log_iv_series(v[series], x[series]))
    if asymptotic.any():
        out = out.masked_scatter(asymptotic, _log_iv_large_x(v[asymptotic], x[asymptotic]))
    return out


def _log_kv_forward(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    v = v.abs()  # K_{-v} = K_v
    large_order = v >= DEBYE_MIN_ORDER
    positive = x > 0
    debye = large_order & positive
    small = ~large_order & positive
    out = torch.full_like(x, math.inf)  # K_v(0) = inf
    if debye.any():
        out = out.masked_scatter(debye, _log_kv_debye(v[debye], x[debye]))
    if small.any():
        out = out.masked_scatter(small, _log_kv_integral(v[small], x[small]))
    return out


class _LogBesselIv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _log_iv_forward(v, x)
        ctx.save_for_backward(v, x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        v, x, out = ctx.saved_tensors
        # I_v' = I_{v+1} + (v / x) I_v  (DLMF 10.29.2)
        ratio = torch.exp(_LogBesselIv.apply(v + 1, x) - out)
        return None, grad * (ratio + v / x)


class _LogBesselKv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = _log_kv_forward(v, x)
        ctx.save_for_backward(v, x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        v, x, out = ctx.saved_tensors
        # K_v' = -K_{v+1} + (v / x) K_v  (DLMF 10.29.2); uses |v| since K_{-v} = K_v
        v = v.abs()
        ratio = torch.exp(_LogBesselKv.apply(v + 1, x) - out)
        return None, grad * (v / x - ratio)


def _broadcast(
    v: torch.Tensor | float, x: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return torch.broadcast_tensors(v, x)


def log_bessel_iv(v: torch.Tensor | float, x: torch.Tensor | float) -> torch.Tensor:
    """log I_v(x), the modified Bessel function of the first kind, for v >= 0 and x >= 0.

    Args:
        v: Order(s), broadcast against `x`; not differentiated.
        x: Argument(s); differentiable. Integers are promoted to float64.

    Returns:
        log I_v(x) in the dtype of `x` (-inf at x = 0 for v > 0).
    """
    v, x = _broadcast(v, x)
    if (v < 0).any() or (x < 0).any():
        raise ValueError("log_bessel_iv needs v >= 0 and x >= 0")
    return _LogBesselIv.apply(v.contiguous(), x.contiguous())


def log_bessel_kv(v: torch.Tensor | float, x: torch.Tensor | float) -> torch.Tensor:
    """log K_v(x), the modified Bessel function of the second kind, for real v and x >= 0.

    Args:
        v: Order(s), broadcast against `x`; not differentiated (K_{-v} = K_v).
        x: Argument(s); differentiable. Integers are promoted to float64.

    Returns:
        log K_v(x) in the dtype of `x` (+inf at x = 0).
    """
    v, x = _broadcast(v, x)
    if (x < 0).any():
        raise ValueError("log_bessel_kv needs x >= 0")
    return _LogBesselKv.apply(v.contiguous(), x.contiguous())


def vmf_log_normalizer(kappa: torch.Tensor, dim: int) -> torch.Tensor:
    """log C_d(kappa) of the von Mises-Fisher density C_d(kappa) exp(kappa mu^T x) on S^(d-1).

    C_d(kappa) = kappa^(d/2-1) / ((2 pi)^(d/2) I_(d/2-1)(kappa)) (Mardia and Jupp, 2000).
    """
    order = dim / 2 - 1
    return order * torch.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_bessel_iv(order, kappa)


def fit_vmf_concentration(
    mean_resultant_length: torch.Tensor, dim: int, newton_steps: int = 8
) -> torch.Tensor:
    """Maximum-likelihood vMF concentration kappa for mean resultant lengths R in (0, 1).

    Solves A_d(kappa) = I_(d/2)(kappa) / I_(d/2-1)(kappa) = R, starting from Banerjee et al.'s
    approximation kappa0 = R (d - R^2) / (1 - R^2) (JMLR 2005) and refining with Newton's
    method (Sra, Computational Statistics 2012, arXiv 1106.2424), A' = 1 - A^2 - (d-1)/kappa A.
    """
    r = mean_resultant_length.double().clamp(1e-6, 1 - 1e-9)
    kappa = r * (dim - r * r) / (1 - r * r)
    order = dim / 2 - 1
    for _ in range(newton_steps):
        a = torch.exp(log_bessel_iv(order + 1, kappa) - log_bessel_iv(order, kappa))
        slope = 1 - a * a - (dim - 1) / kappa * a
        kappa = (kappa - (a - r) / slope).clamp_min(1e-8)
    return kappa.to(mean_resultant_length.dtype)
