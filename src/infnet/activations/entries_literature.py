"""Catalog entries: activations from recent literature (docs/theory/activations.md).

Each entry is its formula, its paper's parameters and defaults, the paper, its kinks and, where one
exists, its closed-form kernel. What could not be checked against the paper's own text is said so
in the entry's ``source``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..numerics import gauss
from . import closed_forms as cf
from .catalog import register
from .entries import horner, positive

Tensor = torch.Tensor
SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _nonnegative(*names):
    def check(**values):
        for n in names:
            if not values[n] >= 0:
                raise ValueError(f"parameter {n} must be >= 0, got {values[n]!r}")
    return check


# ---- SAU: leaky ReLU smoothed by a Gaussian -------------------------------------------------
def _sau(x, alpha, n):
    """(LeakyReLU_alpha * N(0, 1/n^2))(x), the exact convolution."""
    z = n * x
    return ((1 - alpha) * INV_SQRT_2PI / n * torch.exp(-0.5 * z * z)
            + (1 + alpha) / 2 * x + (1 - alpha) / 2 * x * torch.erf(z / SQRT2))


def _sau_kernel(q1, q2, c, alpha, n):
    """Gaussian smoothing is variance inflation: K_SAU(q1, q2, c) = K_LReLU(q1 + 1/n^2, ...)."""
    lrelu = lambda a, b, cc: cf.piecewise_linear(a, b, cc, neg=alpha, pos=1.0)  # noqa: E731
    return cf.smoothed(lrelu, 1.0 / n)(q1, q2, c)


register("sau", _sau,
         formula="(LeakyReLU_alpha * phi_n)(x), phi_n = N(0, 1/n^2) density: "
                 "(1 - alpha)/(n sqrt(2 pi)) exp(-n^2 x^2 / 2) + (1 + alpha) x / 2 "
                 "+ (1 - alpha) x erf(n x / sqrt 2) / 2",
         source="Biswas, Kumar, Banerjee & Pandey 2021, SAU: smooth activation function using "
                "convolution with approximate identities (arXiv 2109.13210); defaults alpha = 0.15 "
                "(trainable, initial value), n = 20000 as in public reimplementations citing the "
                "paper (paper text not read here). This is the exact convolution; some "
                "reimplementations drop the factor (1 - alpha) of the exp term (a difference of at "
                "most alpha / (n sqrt(2 pi)) ~ 3e-6). Kernel: exact, leaky ReLU's at variances "
                "q + 1/n^2",
         defaults={"alpha": 0.15, "n": 20000.0}, check=positive("n"),
         closed_form=_sau_kernel, aliases=("smooth_activation_unit",))


# ---- APA / AGLU: adaptive parametric activation ----------------------------------------------
def _apa(x, lambd, kappa):
    """(l exp(-kappa x) + 1)^(-1/l) = exp(-softplus(log l - kappa x) / l), l = lambd."""
    return torch.exp(-F.softplus(math.log(lambd) - kappa * x) / lambd)


_APA_SOURCE = ("Alexandridis, Deng, Nguyen & Luo 2024, Adaptive Parametric Activation (ECCV 2024, "
               "arXiv 2407.08567; official code github.com/kostas1515/AGLU). lambda, kappa are "
               "trainable (the official code draws their initial values from U(0, 1)); the "
               "default lambda = kappa = 1 is the paper's special case that gives ")
register("apa", _apa, formula="(lambda exp(-kappa x) + 1)^(-1/lambda)",
         source=_APA_SOURCE + "the logistic sigmoid (lambda -> 0: Gumbel exp(-exp(-kappa x)))",
         defaults={"lambd": 1.0, "kappa": 1.0}, check=positive("lambd"))
register("aglu", lambda x, lambd, kappa: x * _apa(x, lambd, kappa),
         formula="x (lambda exp(-kappa x) + 1)^(-1/lambda) = x APA(x)",
         source=_APA_SOURCE + "SiLU", defaults={"lambd": 1.0, "kappa": 1.0},
         check=positive("lambd"))


# ---- PAU: safe Pade activation unit ------------------------------------------------------------
#: 'pade_optimized_leakyrelu' of the official code: the (5, 4) safe PAU fitted to leaky ReLU
#: (slope 0.01), the initialization PAU() uses (github.com/ml-research/pau, pau/utils.py and
#: pau/cuda/python_imp/Pade.py)
PAU_LEAKY_RELU_NUMERATOR = (3.35583603e-02, 5.05000375e-01, 1.65343934e00, 2.01001052e00,
                            9.31901999e-01, 1.52424124e-01)
PAU_LEAKY_RELU_DENOMINATOR = (3.30847488e-06, 3.98021568e00, 5.12471206e-07, 3.01830109e-01)


def _pade(x, numerator, denominator):
    """P(x) / Q(x), P = sum_k a_k x^k (k = 0..m), Q = 1 + sum_k |b_k| |x|^k (k = 1..n)."""
    p = horner(x, numerator)
    ax = x.abs()
    q = torch.zeros_like(x)
    for b in reversed(tuple(denominator)):
        q = (q + abs(b)) * ax
    return p / (1 + q)


def _pade_check(numerator, denominator):
    num, den = tuple(numerator), tuple(denominator)
    if not num:
        raise ValueError("pade needs at least one numerator coefficient")
    if not all(math.isfinite(float(v)) for v in num + den):
        raise ValueError("pade coefficients must be finite numbers")


def _pade_kinks(numerator, denominator):
    # |x|^k is not smooth at 0 for odd k (k = 1: phi' jumps there)
    odd = any(float(b) != 0.0 for k, b in enumerate(tuple(denominator), start=1) if k % 2)
    return (0.0,) if odd else ()


register("pade", _pade,
         formula="P(x) / Q(x), P = sum_{k=0}^m a_k x^k, Q = 1 + sum_{k=1}^n |b_k x^k| "
                 "(safe PAU; numerator = (a_0..a_m), denominator = (b_1..b_n))",
         source="Molina, Schramowski & Kersting 2019, Pade activation units (ICLR 2020, "
                "arXiv 1907.06732); default: degrees (5, 4), the paper's initialization fitted "
                "to leaky ReLU (slope 0.01), coefficients 'pade_optimized_leakyrelu' of the "
                "official code github.com/ml-research/pau",
         defaults={"numerator": PAU_LEAKY_RELU_NUMERATOR,
                   "denominator": PAU_LEAKY_RELU_DENOMINATOR},
         kinks=_pade_kinks, check=_pade_check, aliases=("rational", "pau"))


# ---- Cauchy activation (XNet) -------------------------------------------------------------------
def _nonzero_d(d):
    if not (math.isfinite(d) and d != 0):
        raise ValueError(f"cauchy needs d != 0 (at d = 0 it is singular at x = 0); got {d!r}")


register("cauchy", lambda x, lambda1, lambda2, d: (lambda1 * x + lambda2) / (x * x + d * d),
         formula="lambda1 x / (x^2 + d^2) + lambda2 / (x^2 + d^2)",
         source="Li, Xia & Zhang 2024, Cauchy activation function and XNet (arXiv 2409.19221); "
                "lambda1, lambda2, d trainable; the paper gives no initial values that could be "
                "checked here: defaults 1, 1, 1 (as in public reimplementations)",
         defaults={"lambda1": 1.0, "lambda2": 1.0, "d": 1.0},
         check=lambda lambda1, lambda2, d: _nonzero_d(d),
         aliases=("cauchy_activation",))


# ---- elephant ------------------------------------------------------------------------------------
def _elephant_check(a, d):
    positive("a")(a=a)
    if not d >= 1:
        raise ValueError(f"elephant needs d >= 1 (below 1 its derivative is unbounded at 0, and "
                         f"for d <= 1/2 the NTK is infinite); got d = {d!r}")


def _elephant_kinks(a, d):
    # |x/a|^d is smooth at 0 only for even integer d
    return () if float(d).is_integer() and int(d) % 2 == 0 else (0.0,)


register("elephant", lambda x, a, d: 1.0 / (1.0 + (x / a).abs() ** d),
         formula="1 / (1 + |x / a|^d)",
         source="Lan & Mahmood 2023, Elephant neural networks: born to be a continual learner "
                "(arXiv 2310.01365; official code github.com/qlan3/Elephant, whose networks use "
                "d = 4 and a = 0.1 after a LayerNorm, d = 8, a = 0.08 for streaming regression). "
                "Default a = 1, d = 4: the official d at unit width (infnet's pre-activations are "
                "not layer-normalized); the paper's text was not read here",
         defaults={"a": 1.0, "d": 4.0}, kinks=_elephant_kinks, check=_elephant_check)


# ---- HeLU: hysteresis ReLU ----------------------------------------------------------------------
def _owens_t(h, a, nodes: int = 64):
    """Owen's T(h, a) = (1/2 pi) int_0^a exp(-h^2 (1 + x^2) / 2) / (1 + x^2) dx for h > 0, a >= 0
    (a = inf allowed): Gauss-Legendre on [0, a] for a <= 1, else the identity
    T(h, a) = Phi(h)/2 + Phi(a h)/2 - Phi(h) Phi(a h) - T(a h, 1/a) (Owen 1956)."""
    big = a > 1
    a_s = torch.where(big, 1 / a, a)
    h_s = torch.where(big, a * h, h)
    t, w = gauss.legendre_nodes(nodes, h.dtype, h.device)
    x = a_s.unsqueeze(-1) * (t + 1) / 2
    small = (a_s / (4 * math.pi)) * (w * torch.exp(-0.5 * h_s.unsqueeze(-1) ** 2 * (1 + x * x))
                                     / (1 + x * x)).sum(-1)
    ph, pah = torch.special.ndtr(h), torch.special.ndtr(a * h)
    return torch.where(big, 0.5 * ph + 0.5 * pah - ph * pah - small, small)


def _helu_kernel(q1, q2, c, alpha):
    """K = ReLU's arc-cosine kernel; Kdot = P(u > -alpha, v > -alpha), the bivariate normal
    orthant Phi_2(h, k; rho), h = alpha / sqrt(q1), k = alpha / sqrt(q2), by Owen's formula
    Phi_2 = Phi(h)/2 + Phi(k)/2 - T(h, a_h) - T(k, a_k), a_h = (q1 - c) / sqrt(q1 q2 - c^2)."""
    K, kdot_relu = cf.arccos_kernel(q1, q2, c, n=1)
    if alpha == 0:
        return K, kdot_relu
    q1, q2, c = torch.broadcast_tensors(q1, q2, c)
    root = (q1 * q2 - c * c).clamp(min=0.0).sqrt()

    def t_term(q):
        num = q - c
        a = torch.where(num == 0, torch.zeros_like(num), num / root)
        h = alpha / q.sqrt()
        return 0.5 * torch.special.ndtr(h) - torch.sign(a) * _owens_t(h, a.abs())

    return K, t_term(q1) + t_term(q2)


def _helu(x, alpha):
    """ReLU's value with the hysteresis derivative 1[x > -alpha] for autograd (straight-through),
    so that finite networks train, and their empirical NTK is taken, as in the paper."""
    return torch.relu(x).detach() + (x > -alpha).to(x.dtype) * (x - x.detach())


register("helu", _helu,
         formula="forward max(x, 0); backward (the derivative used for the NTK) 1[x > -alpha]",
         source="Kimhi, Kashani, Mendelson & Baskin 2024, Hysteresis activation function for "
                "efficient inference (arXiv 2411.10573); alpha = 0.05, the default of the official "
                "code github.com/idankdev/helu. Kernel: K of ReLU (arc-cosine), Kdot the "
                "bivariate normal orthant probability P(u > -alpha, v > -alpha) (Owen's T)",
         defaults={"alpha": 0.05}, check=_nonnegative("alpha"),
         kinks=lambda alpha: tuple(sorted({0.0, -float(alpha)})),
         derivative=lambda x, alpha: (x > -alpha).to(x.dtype), closed_form=_helu_kernel)


# ---- expanded gating ranges: ATLU, xATLU, xGELU, xSiLU ------------------------------------------
_HUANG = ("Huang 2024, Expanded gating ranges improve activation functions (arXiv 2405.20768): "
          "x [g(x) (1 + 2 alpha) - alpha], the gate's range (0, 1) widened to (-alpha, 1 + alpha) "
          "by a trainable alpha initialized at 0 (the default)")


def _expanded(gate):
    return lambda x, alpha: x * (gate(x) * (1 + 2 * alpha) - alpha)


def _arctan_gate(x):
    return torch.atan(x) / math.pi + 0.5


def _gelu_gate(x):
    return torch.special.ndtr(x)


register("atlu", lambda x: x * _arctan_gate(x), formula="x (arctan(x) / pi + 1/2)",
         source="Huang 2024, ArcTan linear unit (arXiv 2405.20768)")
register("xatlu", _expanded(_arctan_gate),
         formula="x [(arctan(x) / pi + 1/2) (1 + 2 alpha) - alpha]", source=_HUANG,
         defaults={"alpha": 0.0})
register("xgelu", _expanded(_gelu_gate), formula="x [Phi(x) (1 + 2 alpha) - alpha]",
         source=_HUANG, defaults={"alpha": 0.0})
register("xsilu", _expanded(torch.sigmoid), formula="x [sigmoid(x) (1 + 2 alpha) - alpha]",
         source=_HUANG, defaults={"alpha": 0.0})


# ---- Mittag-Leffler ----------------------------------------------------------------------------
#: below this |z| the power series (its cancellation error is eps E(|z|) <= 1e-14 here)
ML_SERIES_RADIUS = 1.0
#: elements per chunk times quadrature nodes (memory bound of the integral representation)
_ML_CHUNK = 1 << 22


@lru_cache(maxsize=64)
def _ml_series_coefficients(alpha: float, beta: float) -> tuple[float, ...]:
    """1 / Gamma(alpha k + beta), k = 0..K, enough terms for |z| <= ML_SERIES_RADIUS."""
    out, k = [], 0
    while True:
        arg = alpha * k + beta
        out.append(1.0 / math.gamma(arg))
        if arg > 25 and k > 4:  # 1 / Gamma(25) ~ 1.6e-24
            return tuple(out)
        k += 1


@lru_cache(maxsize=64)
def _ml_nodes(alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes chi and weights (times the kernel's chi-only factor) of an exp-sinh rule on (0, inf).

    The integrand of ``_ml_integral`` has poles at chi = |z| exp(+-i (1 - alpha) pi) (z < 0) or
    |z| exp(+-i alpha pi) (z > 0); the step is set from their angle to keep the error ~ 1e-16,
    and the rule ends where exp(-chi^(1/alpha)) < 1e-19.
    """
    h = 0.12 * min(alpha, 1.0 - alpha)
    s_max = math.asinh(2 / math.pi * alpha * math.log(44.0)) + 0.1
    s = np.arange(-4.0, s_max + h / 2, h)
    chi = np.exp(0.5 * math.pi * np.sinh(s))
    w = (chi * 0.5 * math.pi * np.cosh(s) * h * chi ** ((1 - beta) / alpha)
         * np.exp(-chi ** (1 / alpha)) / (alpha * math.pi))
    return chi, w


def _ml_integral(z: Tensor, alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    """(I(z), I'(z)), I = int_0^inf K(chi, z) dchi, the Gorenflo-Loutchko-Luchko kernel

        K = chi^((1-beta)/alpha) exp(-chi^(1/alpha)) (chi sin(pi(1-beta)) - z sin(pi(1-beta+alpha)))
            / (alpha pi (chi^2 - 2 chi z cos(alpha pi) + z^2)),

    with E_{alpha,beta}(z) = I(z) for z < 0 and I(z) + z^((1-beta)/alpha) exp(z^(1/alpha)) / alpha
    for z > 0 (0 < alpha < 1, beta < 1 + alpha; Gorenflo, Loutchko & Luchko 2002, Fract. Calc.
    Appl. Anal. 5, 491). z must stay away from 0 (|z| >= ML_SERIES_RADIUS here).
    """
    chi_np, w_np = _ml_nodes(alpha, beta)
    chi = torch.as_tensor(chi_np, dtype=z.dtype, device=z.device)
    weight = torch.as_tensor(w_np, dtype=z.dtype, device=z.device)
    s1, s2 = math.sin(math.pi * (1 - beta)), math.sin(math.pi * (1 - beta + alpha))
    cos_a = math.cos(alpha * math.pi)
    flat = z.reshape(-1)
    chunk = max(1, _ML_CHUNK // chi.numel())
    vals, ders = [], []
    for start in range(0, flat.numel(), chunk):
        zz = flat[start:start + chunk, None]
        inv = 1 / (chi * (chi - 2 * cos_a * zz) + zz * zz)  # 1 / den
        term = weight * (chi * s1 - zz * s2) * inv
        vals.append(term.sum(-1))
        # d/dz (num / den) = (-s2 - (num / den) dden) / den, dden = 2 z - 2 cos(alpha pi) chi
        ders.append((inv * (-s2 * weight - term * (2 * zz - 2 * cos_a * chi))).sum(-1))
    return torch.cat(vals).reshape(z.shape), torch.cat(ders).reshape(z.shape)


def _check_ml_parameters(alpha: float, beta: float) -> None:
    if alpha == 1.0 and beta == 1.0:
        return
    if not 0.1 <= alpha <= 0.95:
        raise ValueError(f"Mittag-Leffler parameters: need 0.1 <= alpha <= 0.95 or "
                         f"alpha = beta = 1 (the exponential); got alpha = {alpha!r}")
    if not alpha <= beta <= 1.0:
        raise ValueError(f"Mittag-Leffler parameters: need alpha <= beta <= 1 (then "
                         f"E_{{alpha,beta}}(-x) is completely monotone, so E > 0 on the real "
                         f"line); got alpha = {alpha!r}, beta = {beta!r}")


def mittag_leffler_log(z: Tensor, alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    """(log E_{alpha,beta}(z), E'/E) for real z, float64, 0.1 <= alpha <= 0.95, alpha <= beta <= 1.

    E_{alpha,beta}(z) = sum_k z^k / Gamma(alpha k + beta) is positive on the real line for these
    parameters; its logarithm stays finite where E itself overflows (z^(1/alpha) > 709).
    Evaluation: the power series for |z| <= 1, the integral representation of Gorenflo, Loutchko
    and Luchko (2002) with an exp-sinh rule beyond (no cancellation, ~1e-15 absolute for z < 0,
    relative for z > 0); alpha = beta = 1 is exp(z) exactly. Not differentiable by autograd (the
    derivative is returned instead).
    """
    alpha, beta = float(alpha), float(beta)
    _check_ml_parameters(alpha, beta)
    z = torch.as_tensor(z, dtype=torch.float64) if not torch.is_tensor(z) else z.detach()
    if alpha == 1.0 and beta == 1.0:
        return z.clone(), torch.ones_like(z)
    r = ML_SERIES_RADIUS
    # power series on |z| <= r (Horner; coefficients 1 / Gamma(alpha k + beta))
    zs = z.clamp(-r, r)
    coef = _ml_series_coefficients(alpha, beta)
    e = torch.zeros_like(z)
    de = torch.zeros_like(z)
    for k in range(len(coef) - 1, -1, -1):
        e = e * zs + coef[k]
        if k:
            de = de * zs + k * coef[k]
    small_log, small_dlog = torch.log(e), de / e
    # integral representation on |z| > r
    zi = torch.where(z.abs() > r, z, torch.full_like(z, r))
    i_val, i_der = _ml_integral(zi, alpha, beta)
    neg_log, neg_dlog = torch.log(i_val), i_der / i_val
    # z > r: E = M (1 + I / M), M = z^((1-beta)/alpha) exp(z^(1/alpha)) / alpha
    zp = zi.abs()
    log_m = -math.log(alpha) + (1 - beta) / alpha * torch.log(zp) + zp ** (1 / alpha)
    dlog_m = (1 - beta) / alpha / zp + zp ** (1 / alpha - 1) / alpha
    ratio = i_val * torch.exp(-log_m)
    pos_log = log_m + torch.log1p(ratio)
    pos_dlog = (dlog_m + i_der * torch.exp(-log_m)) / (1 + ratio)
    inside = z.abs() <= r
    log_e = torch.where(inside, small_log, torch.where(z > 0, pos_log, neg_log))
    dlog_e = torch.where(inside, small_dlog, torch.where(z > 0, pos_dlog, neg_dlog))
    return log_e, dlog_e


def mittag_leffler(z, alpha: float, beta: float = 1.0) -> Tensor:
    """E_{alpha,beta}(z) = sum_k z^k / Gamma(alpha k + beta) for real z (see mittag_leffler_log)."""
    return torch.exp(mittag_leffler_log(z, alpha, beta)[0])


def _ml_gated_parts(x: Tensor, alpha, beta, gamma) -> tuple[Tensor, Tensor]:
    """phi(x) = x g(x), g = 1 / (1 + E(-gamma x)) = sigmoid(-log E), and phi'(x)."""
    log_e, dlog_e = mittag_leffler_log(-gamma * x.detach(), alpha, beta)
    g = torch.sigmoid(-log_e)
    # g' = gamma E'(-gamma x) / (1 + E)^2 = gamma (E'/E) g (1 - g)
    return x.detach() * g, g + x.detach() * gamma * dlog_e * g * torch.sigmoid(log_e)


def _ml_gated(x, alpha, beta, gamma):
    value, slope = _ml_gated_parts(x, alpha, beta, gamma)
    # the value, with the exact derivative for autograd (no graph through the quadrature)
    return value + slope * (x - x.detach())


register("mittag_leffler", _ml_gated,
         formula="x g(x), gate g(x) = 1 / (1 + E_{alpha,beta}(-gamma x)), "
                 "E_{alpha,beta}(z) = sum_k z^k / Gamma(alpha k + beta); alpha = beta = 1 is "
                 "swish x sigmoid(gamma x)",
         source="after Mostafanejad 2023, Unification of popular artificial neural network "
                "activation functions (arXiv 2302.11007; Fract. Calc. Appl. Anal. 27, 3504, "
                "2024): a gated form x g(x) with a Mittag-Leffler gate. The paper's own equations "
                "could not be retrieved here: this gate (the logistic gate with exp replaced by "
                "E_{alpha,beta}) is infnet's reading, not verified against the paper; defaults "
                "alpha = beta = gamma = 1 give SiLU/swish",
         defaults={"alpha": 1.0, "beta": 1.0, "gamma": 1.0},
         check=lambda alpha, beta, gamma: (_check_ml_parameters(alpha, beta),
                                           positive("gamma")(gamma=gamma)),
         derivative=lambda x, alpha, beta, gamma: _ml_gated_parts(x, alpha, beta, gamma)[1],
         aliases=("ml_gated", "mittag_leffler_gated"))
