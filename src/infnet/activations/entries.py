"""Catalog entries: classic activations. Each is its formula, parameters, source, kinks and,
where one exists (docs/theory/closed-forms.md), its closed-form kernel."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import closed_forms as cf
from .catalog import register


def positive(*names):
    """A parameter check: the named parameters must be > 0 (shared by the entry modules)."""
    def check(**values):
        for n in names:
            if not values[n] > 0:
                raise ValueError(f"parameter {n} must be > 0, got {values[n]!r}")
    return check


def _pl(neg=None, pos=1.0):
    """Closed form and angle form of a piecewise-linear unit; neg=None: the parameter alpha."""
    def closed(q1, q2, c, alpha=None):
        return cf.piecewise_linear(q1, q2, c, neg=alpha if neg is None else neg, pos=pos)

    def angle(q1, q2, theta, alpha=None):
        return cf.piecewise_linear_angle(q1, q2, theta, neg=alpha if neg is None else neg, pos=pos)

    return {"closed_form": closed, "angle_form": angle}


# ---- piecewise linear and rectified -------------------------------------------------------
register("identity", lambda x: x, formula="x", source="linear network",
         **_pl(1.0, 1.0), aliases=("linear",))
register("relu", lambda x: torch.relu(x), formula="max(x, 0)",
         source="Nair & Hinton 2010; kernel: Cho & Saul 2009", kinks=(0.0,),
         **_pl(0.0, 1.0), derivative=lambda x: (x > 0).to(x.dtype))
register("leaky_relu", lambda x, alpha: F.leaky_relu(x, alpha),
         formula="max(x, 0) + alpha min(x, 0)", source="Maas, Hannun & Ng 2013",
         defaults={"alpha": 0.01}, kinks=(0.0,),
         **_pl())
register("prelu", lambda x, alpha: F.leaky_relu(x, alpha),
         formula="max(x, 0) + a min(x, 0), a learned (init 0.25)", source="He et al. 2015",
         defaults={"alpha": 0.25}, kinks=(0.0,),
         **_pl())
register("abs", lambda x: x.abs(), formula="|x|", source="absolute value",
         kinks=(0.0,), **_pl(-1.0, 1.0))
register("step", lambda x: (x > 0).to(x.dtype), formula="1[x > 0]",
         source="Heaviside; kernel: arc-cosine n = 0 (Cho & Saul 2009)", kinks=(0.0,), jumps=True,
         closed_form=lambda q1, q2, c: cf.arccos_kernel(q1, q2, c, n=0),
         angle_form=lambda q1, q2, theta: cf.arccos_kernel_angle(q1, q2, theta, n=0),
         aliases=("heaviside",))
register("sign", lambda x: torch.sign(x), formula="sign(x)",
         source="sign; K = (2/pi) arcsin(rho); Kdot by Price's theorem", kinks=(0.0,), jumps=True,
         closed_form=cf.sign, angle_form=cf.sign_angle)


def _relu_power_check(n):
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"relu_power needs an integer n >= 1 (n = 0 is 'step'), got {n!r}")


register("relu_power", lambda x, n: torch.relu(x) ** n, formula="max(x, 0)^n",
         source="arc-cosine kernels, Cho & Saul 2009", defaults={"n": 2}, kinks=(0.0,),
         closed_form=lambda q1, q2, c, n: cf.arccos_kernel(q1, q2, c, n=n),
         angle_form=lambda q1, q2, theta, n: cf.arccos_kernel_angle(q1, q2, theta, n=n),
         closed_when=lambda n: n <= 2, check=_relu_power_check, aliases=("squared_relu",))
register("hardtanh", lambda x, min_val, max_val: x.clamp(min_val, max_val),
         formula="clip(x, min_val, max_val)", source="Collobert 2004",
         defaults={"min_val": -1.0, "max_val": 1.0},
         kinks=lambda min_val, max_val: (min_val, max_val))
register("relu6", lambda x: x.clamp(0.0, 6.0), formula="min(max(x, 0), 6)",
         source="Krizhevsky 2010", kinks=(0.0, 6.0))
register("hardsigmoid", lambda x: (x / 6 + 0.5).clamp(0.0, 1.0), formula="relu6(x + 3) / 6",
         source="Howard et al. 2019 (MobileNetV3)", kinks=(-3.0, 3.0))
register("hardswish", lambda x: x * (x / 6 + 0.5).clamp(0.0, 1.0), formula="x relu6(x + 3) / 6",
         source="Howard et al. 2019 (MobileNetV3)", kinks=(-3.0, 3.0))
def _elu(x, alpha):
    """alpha (e^x - 1) for x < 0, x else: torch's fused elu for a number alpha; for a tensor
    alpha (a hyperparameter being differentiated) the same in ops that carry its tangent."""
    if not torch.is_tensor(alpha):
        return F.elu(x, alpha)
    return torch.where(x > 0, x, alpha * torch.expm1(x.clamp(max=0.0)))


def _celu(x, alpha):
    """max(0, x) + min(0, alpha (e^(x/alpha) - 1)), as ``_elu`` for a tensor alpha."""
    if not torch.is_tensor(alpha):
        return F.celu(x, alpha)
    return torch.where(x > 0, x, alpha * torch.expm1(x.clamp(max=0.0) / alpha))


def _celu_derivative(x, alpha):
    """e^(x/alpha) for x < 0, 1 else (torch's own celu backward is off by 1e-7 relative: it
    rounds 1/alpha to float32)."""
    return torch.where(x > 0, torch.ones_like(x), torch.exp(x.clamp(max=0.0) / alpha))


register("elu", _elu, formula="x if x > 0 else alpha (e^x - 1)",
         source="Clevert, Unterthiner & Hochreiter 2015", defaults={"alpha": 1.0}, kinks=(0.0,))
register("selu", lambda x, scale, alpha: scale * _elu(x, alpha),
         formula="lambda (x if x > 0 else alpha (e^x - 1))", source="Klambauer et al. 2017",
         defaults={"scale": 1.0507009873554805, "alpha": 1.6732632423543772}, kinks=(0.0,))
register("celu", _celu,
         formula="max(0, x) + min(0, alpha (e^(x/alpha) - 1))", source="Barron 2017",
         defaults={"alpha": 1.0}, kinks=(0.0,), check=positive("alpha"),
         derivative=_celu_derivative)
register("softsign", lambda x: x / (1 + x.abs()), formula="x / (1 + |x|)",
         source="Turian, Bergstra & Bengio 2009", kinks=(0.0,))

# ---- smooth with closed forms -------------------------------------------------------------
register("erf", lambda x, scale: torch.erf(scale * x), formula="erf(scale x)",
         source="kernel: Williams 1997", defaults={"scale": 1.0},
         closed_form=cf.erf, angle_form=cf.erf_angle, check=positive("scale"))
register("gelu", lambda x: x * 0.5 * (1 + torch.erf(x / math.sqrt(2))), formula="x Phi(x)",
         source="Hendrycks & Gimpel 2016; kernel: Tsuchida et al. 2020 (arXiv 2002.08517)",
         closed_form=cf.gelu, angle_form=cf.gelu_angle)
register("sin", lambda x, amplitude, frequency, phase: amplitude * torch.sin(frequency * x + phase),
         formula="a sin(b x + g)", source="Fourier features; kernel: Gaussian integrals",
         defaults={"amplitude": 1.0, "frequency": 1.0, "phase": 0.0},
         closed_form=lambda q1, q2, c, amplitude, frequency, phase: cf.sine(
             q1, q2, c, amplitude=amplitude, frequency=frequency, phase=phase), aliases=("sine",))
register("cos", lambda x, amplitude, frequency, phase: amplitude * torch.cos(frequency * x + phase),
         formula="a cos(b x + g)", source="Fourier features; kernel: Gaussian integrals",
         defaults={"amplitude": 1.0, "frequency": 1.0, "phase": 0.0},
         closed_form=lambda q1, q2, c, amplitude, frequency, phase: cf.sine(
             q1, q2, c, amplitude=amplitude, frequency=frequency, phase=phase + math.pi / 2))
register("rff", lambda x, gamma: math.sqrt(2) * torch.sin(math.sqrt(2 * gamma) * x + math.pi / 4),
         formula="sqrt(2) sin(sqrt(2 gamma) x + pi/4)",
         source="random Fourier features, Rahimi & Recht 2007: K = exp(-gamma |u - v|^2)",
         defaults={"gamma": 1.0}, check=positive("gamma"),
         closed_form=lambda q1, q2, c, gamma: cf.sine(
             q1, q2, c, amplitude=math.sqrt(2), frequency=math.sqrt(2 * gamma), phase=math.pi / 4))
register("exp", lambda x, amplitude, rate: amplitude * torch.exp(rate * x), formula="a exp(b x)",
         source="exponential; K = a^2 exp(b^2 (q1 + q2 + 2c) / 2)",
         defaults={"amplitude": 1.0, "rate": 1.0},
         closed_form=lambda q1, q2, c, amplitude, rate: cf.exponential(
             q1, q2, c, amplitude=amplitude, rate=rate))
register("gaussian", lambda x, amplitude, rate: amplitude * torch.exp(rate * x * x),
         formula="a exp(b x^2)", source="Gaussian bump; kernel finite for b < 1/(2 q)",
         defaults={"amplitude": 1.0, "rate": -0.5},
         closed_form=lambda q1, q2, c, amplitude, rate: cf.gaussian(
             q1, q2, c, amplitude=amplitude, rate=rate))
register("snake", lambda x, a: x + torch.sin(a * x) ** 2 / a, formula="x + sin^2(a x) / a",
         source="Ziyin, Hartwig & Ueda 2020 (arXiv 2006.08195)", defaults={"a": 1.0},
         closed_form=cf.snake, check=positive("a"))


def horner(x, coefficients):
    """sum_i p_i x^i by Horner's rule (shared by the entry modules)."""
    out = torch.zeros_like(x)
    for p in reversed(tuple(coefficients)):
        out = out * x + p
    return out


def _poly_check(coefficients):
    if len(tuple(coefficients)) == 0:
        raise ValueError("polynomial needs at least one coefficient")


register("polynomial", horner, formula="sum_i p_i x^i (coefficients p_0, p_1, ...)",
         source="exact by Isserlis' theorem", defaults={"coefficients": (0.0, 1.0)},
         closed_form=cf.polynomial, check=_poly_check)
register("monomial", lambda x, k: x**k, formula="x^k", source="exact by Isserlis' theorem",
         defaults={"k": 2},
         closed_form=lambda q1, q2, c, k: cf.polynomial(
             q1, q2, c, coefficients=[0.0] * k + [1.0]),
         check=lambda k: _nonneg_int("k", k))


def _nonneg_int(name, k):
    if not (isinstance(k, int) and k >= 0):
        raise ValueError(f"{name} must be an integer >= 0, got {k!r}")


register("hermite", lambda x, k: horner(x, cf.hermite_coefficients(k)),
         formula="h_k(x) = He_k(x) / sqrt(k!) (normalized probabilists' Hermite)",
         source="dual rho^k (Daniely et al. 2016); infinite depth: 1-NN for k >= 2",
         defaults={"k": 2}, check=lambda k: _nonneg_int("k", k),
         closed_form=lambda q1, q2, c, k: cf.hermite_series_kernel(
             q1, q2, c, coefficients=[0.0] * k + [1.0]))  # Mehler: exact, no cancellation

# ---- smooth without closed forms (quadrature) -------------------------------------------------
register("tanh", torch.tanh, formula="tanh(x)", source="hyperbolic tangent",
         derivative=lambda x: 1 - torch.tanh(x) ** 2)
register("sigmoid", torch.sigmoid, formula="1 / (1 + e^-x)", source="logistic",
         aliases=("logistic",), derivative=lambda x: torch.sigmoid(x) * torch.sigmoid(-x))
register("tempered_sigmoid",
         lambda x, scale, temperature, offset: scale * torch.sigmoid(temperature * x) - offset,
         formula="s sigmoid(T x) - o (2, 2, 1 gives tanh)",
         source="Papernot et al. 2020 (tempered sigmoids for DP-SGD)",
         defaults={"scale": 2.0, "temperature": 2.0, "offset": 1.0})


def _swish_derivative(x, beta=1.0):
    s = torch.sigmoid(beta * x)
    return s + beta * x * s * (1 - s)


register("swish", lambda x, beta: x * torch.sigmoid(beta * x), formula="x sigmoid(beta x)",
         source="Ramachandran, Zoph & Le 2017", defaults={"beta": 1.0}, derivative=_swish_derivative)
register("silu", F.silu, formula="x sigmoid(x)", source="Elfwing, Uchibe & Doya 2018",
         derivative=_swish_derivative)
register("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
         formula="x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2",
         source="Hendrycks & Gimpel 2016 (tanh approximation)")
# logaddexp, not F.softplus: torch's softplus returns x itself beyond beta x = 20, a jump of
# 2e-9 that the quadrature would have to resolve
register("softplus", lambda x, beta: torch.logaddexp(beta * x, torch.zeros_like(x)) / beta,
         formula="log(1 + e^(beta x)) / beta",
         source="Dugas et al. 2001", defaults={"beta": 1.0}, check=positive("beta"),
         derivative=lambda x, beta: torch.sigmoid(beta * x))
register("mish", F.mish, formula="x tanh(softplus(x))", source="Misra 2019 (arXiv 1908.08681)")
register("bent_identity", lambda x: (torch.sqrt(x * x + 1) - 1) / 2 + x,
         formula="(sqrt(x^2 + 1) - 1) / 2 + x", source="bent identity", aliases=("bentid",))
#: Taylor coefficients of x - tanh(x) = x^3 (c0 + c1 x^2 + ...) (from tanh's Bernoulli series)
_TANHSHRINK_SERIES = (1 / 3, -2 / 15, 17 / 315, -62 / 2835, 1382 / 155925, -21844 / 6081075,
                      929569 / 638512875)


def _tanhshrink(x):
    """x - tanh(x), by its Taylor series below |x| = 0.1 (relative error < 2e-17), where the
    difference itself would cancel (a tiny variance sees only such x)."""
    x2 = x * x
    series = torch.zeros_like(x)
    for c in reversed(_TANHSHRINK_SERIES):
        series = series * x2 + c
    return torch.where(x.abs() < 0.1, series * x2 * x, x - torch.tanh(x))


register("tanhshrink", _tanhshrink, formula="x - tanh(x)", source="PyTorch",
         derivative=lambda x: torch.tanh(x) ** 2)
register("logsigmoid", F.logsigmoid, formula="log sigmoid(x)", source="PyTorch")
