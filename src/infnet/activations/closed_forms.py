"""Closed-form kernel maps (K, Kdot) as functions of (q1, q2, c); docs/theory/closed-forms.md.

Each function takes broadcasting float tensors q1, q2, c with |c| <= sqrt(q1 q2) (checked by the
caller) and the activation's parameters, and returns (E[phi(u)phi(v)], E[phi'(u)phi'(v)]).
Angles come from atan2(sqrt(q1 q2 - c^2), c), which stays exact at rho = +-1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..numerics.moments import corr_angle, corr_gap, corr_root, geometric_mean, sin_of_angle

Tensor = torch.Tensor
PI = math.pi


def angle_out(gap: Tensor, gap_plus: Tensor) -> Tensor:
    """The output angle theta' = arccos(rho') from 1 - rho' and 1 + rho', each computed without
    cancellation: 2 atan2(sqrt(1 - rho'), sqrt(1 + rho')) is exact at both ends."""
    return 2 * torch.atan2(gap.clamp(min=0.0).sqrt(), gap_plus.clamp(min=0.0).sqrt())


def _theta_cos_minus_sin(theta, cos, sin):
    """theta cos(theta) - sin(theta) = sum_k (-1)^k 2k theta^(2k+1) / (2k+1)!, by the series below
    theta = 1/2 (to full relative accuracy: the direct difference loses eps / theta^2 there)."""
    out = theta * cos - sin
    small = theta < 0.5
    if not bool(small.any()):
        return out
    t = theta[small] if out.shape == small.shape else theta.expand_as(out)[small]
    t2 = t * t
    series = torch.full_like(t, _SERIES[0])
    for c in _SERIES[1:]:  # Horner in theta^2; terms fall like theta^2 / (4 k^2)
        series.mul_(t2).add_(c)
    out[small] = series.mul_(t2).mul_(t)
    return out


#: coefficients (-1)^k 2k / (2k+1)! of theta^(2k+1) in theta cos(theta) - sin(theta), k = 12..1
_SERIES = [(-1) ** k * 2 * k / math.factorial(2 * k + 1) for k in range(12, 0, -1)]


def piecewise_linear_angle(q1, q2, theta, *, neg: float, pos: float):
    """phi = neg * min(x, 0) + pos * max(x, 0) (ReLU, leaky ReLU, abs, identity), as a function of
    the angle: with m = (a^2 + b^2)/2, d2 = (a - b)^2, r = sqrt(q1 q2),

    K = r [d2 sin(theta) / (2 pi) + Kdot cos(theta)],  Kdot = m - d2 theta / (2 pi)
    (Cho & Saul 2009, generalized), and the output angle from
    1 -+ rho' = [m (1 -+ cos theta) +- d2 (theta cos theta - sin theta) / (2 pi)] / m.
    """
    r = geometric_mean(q1, q2)
    d2 = (neg - pos) ** 2
    m = (neg * neg + pos * pos) / 2
    cos, sin = torch.cos(theta), torch.sin(theta)
    kdot = m - d2 * theta / (2 * PI)
    k = r * (d2 / (2 * PI) * sin + kdot * cos)
    wedge = d2 / (2 * PI) * _theta_cos_minus_sin(theta, cos, sin)  # <= 0, O(theta^3) near 0
    gap = (2 * m * torch.sin(theta / 2) ** 2 + wedge) / m
    gap_plus = (2 * m * torch.cos(theta / 2) ** 2 - wedge) / m
    return k, kdot, angle_out(gap, gap_plus)


def piecewise_linear(q1, q2, c, *, neg: float, pos: float):
    """(K, Kdot) of ``piecewise_linear_angle`` at theta = arccos(c / sqrt(q1 q2)), without the
    output angle: r sin(theta) = sqrt(q1 q2 - c^2) and r cos(theta) = c, so
    K = d2 sqrt(q1 q2 - c^2) / (2 pi) + Kdot c."""
    root = corr_root(q1, q2, c)
    d2 = (neg - pos) ** 2
    kdot = torch.atan2(root, c).mul_(-d2 / (2 * PI)).add_((neg * neg + pos * pos) / 2)
    return root.mul_(d2 / (2 * PI)).addcmul_(kdot, c), kdot


def arccos_kernel_angle(q1, q2, theta, *, n: int):
    """phi = max(x, 0)^n, n = 0, 1, 2 (Cho & Saul 2009), r = sqrt(q1 q2):
    K = r^n J_n(theta) / (2 pi), Kdot = n^2 r^(n-1) J_(n-1)(theta) / (2 pi); step's Kdot is
    Price's 1 / (2 pi r sin theta). The output angle from 1 - rho' (no cancellation):
    n = 0: theta / pi;  n = 2: [2 pi sin^2 theta + theta (1 + 2 cos^2 theta) - 3 sin cos] / (3 pi)."""
    if n == 1:
        return piecewise_linear_angle(q1, q2, theta, neg=0.0, pos=1.0)
    r = geometric_mean(q1, q2)
    cos, sin = torch.cos(theta), torch.sin(theta)
    j0 = (PI - theta) / (2 * PI)
    if n == 0:
        gap = theta / PI
        return j0 + 0 * r, 1.0 / (2 * PI * r * sin), angle_out(gap, 2 - gap)
    if n == 2:
        j1 = r * (sin + (PI - theta) * cos) / (2 * PI)
        k = r * r * (3 * sin * cos + (PI - theta) * (1 + 2 * cos * cos)) / (2 * PI)
        gap = (2 * PI * sin * sin + theta * (1 + 2 * cos * cos) - 3 * sin * cos) / (3 * PI)
        return k, 4 * j1, angle_out(gap, 2 - gap)
    raise ValueError("closed form only for n in {0, 1, 2}")


def arccos_kernel(q1, q2, c, *, n: int):
    """(K, Kdot) of ``arccos_kernel_angle`` at theta = arccos(c / sqrt(q1 q2))."""
    return arccos_kernel_angle(q1, q2, corr_angle(q1, q2, c)[1], n=n)[:2]


def sign_angle(q1, q2, theta):
    """phi = sign(x): K = (2/pi) arcsin(rho) = 1 - 2 theta / pi; Kdot = dK/dc = 2 / (pi r sin theta)
    (Price's theorem; neural-tangents sets it to 0 instead); 1 -+ rho' = 2 theta / pi,
    2 (pi - theta) / pi."""
    r = geometric_mean(q1, q2)
    k = 1 - 2 * theta / PI + 0 * r
    return k, 2 / (PI * r * torch.sin(theta)), angle_out(2 * theta / PI, 2 * (PI - theta) / PI)


def sign(q1, q2, c):
    """(K, Kdot) of ``sign_angle`` at theta = arccos(c / sqrt(q1 q2))."""
    return sign_angle(q1, q2, corr_angle(q1, q2, c)[1])[:2]


def erf(q1, q2, c, *, scale: float):
    """phi = erf(b x) (Williams 1997): K = (2/pi) arcsin(2 b^2 c / sqrt((1+2b^2 q1)(1+2b^2 q2))),
    Kdot = (4 b^2 / pi) / sqrt((1+2b^2 q1)(1+2b^2 q2) - 4 b^4 c^2)."""
    gap = corr_gap(q1, q2, c)
    if gap is None:  # products beyond float64: the scaled root
        return _erf(q1, q2, c, corr_root(q1, q2, c), scale)
    # root^2 = 1 + 2 b^2 (q1 + q2) + 4 b^4 s^2 formed directly (one square root, no hypot:
    # the map of every entry of a pooled CNN's covariances)
    b2 = scale * scale
    root = gap.mul_(4 * b2 * b2).add_((0.5 + 2 * b2 * q1) + (0.5 + 2 * b2 * q2)).sqrt_()
    return _erf_maps(c, root, b2)


def erf_angle(q1, q2, theta, *, scale: float):
    """``erf`` from the angle of the pair (s = sqrt(q1 q2) sin theta, exact near rho = +-1,
    where q1 q2 - c^2 has lost it), with the output angle in closed form (``_erf_out``)."""
    r = geometric_mean(q1, q2)
    c, s = r * torch.cos(theta), r * sin_of_angle(theta)
    k, kdot = _erf(q1, q2, c, s, scale)
    return k, kdot, _erf_out(q1, q2, c, s, scale)


def _erf_out(q1, q2, c, s, scale):
    """The angle of two erf outputs without cancellation near rho' = +-1.

    With P_i = 1 + 2 b^2 q_i, r_i = 2 b^2 q_i / P_i, r = 2 b^2 |c| / sqrt(P1 P2) and
    A_i = asin(r_i), A = asin(r), the output correlation is +-A / sqrt(A1 A2), and
    sqrt(A1 A2) - A = [(A1 - A) + (A2 - A) - (sqrt A1 - sqrt A2)^2] / 2, each difference of
    arcsines asin(x) - asin(y) = asin((x^2 - y^2) / (x sqrt(1 - y^2) + y sqrt(1 - x^2))), whose
    x^2 - y^2 have closed forms in s^2 = q1 q2 - c^2 (no difference of nearly equal numbers):
    r_1^2 - r^2 = 4 b^4 (q1 (q1 - q2) + s^2 P1) / (P1^2 P2) and
    r_1^2 - r_2^2 = 4 b^4 (q1 - q2)(q1 + q2 + 4 b^2 q1 q2) / (P1 P2)^2. (When q1 and q2 differ
    the square is not small but neither is 1 - rho'.) A zero output is at angle pi/2."""
    b2 = scale * scale
    p1, p2 = 1 + 2 * b2 * q1, 1 + 2 * b2 * q2
    r1, r2 = 2 * b2 * q1 / p1, 2 * b2 * q2 / p2
    r = 2 * b2 * c.abs() / (p1 * p2).sqrt()
    root1, root2 = (((1 + v) / pv).sqrt() for v, pv in ((r1, p1), (r2, p2)))  # sqrt(1 - r_i^2)
    root = (1 + 2 * b2 * (q1 + q2) + 4 * b2 * b2 * s * s).sqrt() / (p1 * p2).sqrt()  # sqrt(1 - r^2)
    a1, a2, a = torch.asin(r1), torch.asin(r2), torch.asin(r)
    d1 = torch.asin(4 * b2 * b2 * (q1 * (q1 - q2) + s * s * p1) / (p1 * p1 * p2)
                    / (r1 * root + r * root1).clamp(min=1e-300))
    d2 = torch.asin(4 * b2 * b2 * (q2 * (q2 - q1) + s * s * p2) / (p2 * p2 * p1)
                    / (r2 * root + r * root2).clamp(min=1e-300))
    d12 = torch.asin(4 * b2 * b2 * (q1 - q2) * (q1 + q2 + 4 * b2 * q1 * q2) / (p1 * p2) ** 2
                     / (r1 * root2 + r2 * root1).clamp(min=1e-300))
    norm = (a1 * a2).sqrt()
    spread = d12 / (a1.sqrt() + a2.sqrt()).clamp(min=1e-300)
    twice = d1 + d2 - spread * spread  # 2 (sqrt(A1 A2) - A)
    near = twice / 2 / norm  # 1 - |rho'|
    far = 1 + a / norm  # 1 + |rho'|
    positive = c >= 0
    out = angle_out(torch.where(positive, near, far), torch.where(positive, far, near))
    out = torch.where(norm > 0, out, PI / 2)
    # nearly equal variances and nearly parallel: d1 ~ -d2 cancel; NaN sends those entries to
    # the generic rule (``Activation.pair_map``)
    lost = (d1.abs() + d2.abs()) > 1e3 * twice.abs()
    return torch.where(lost & (norm > 0), math.nan, out)


def _erf(q1, q2, c, s, scale):
    # (1+2b^2 q1)(1+2b^2 q2) - 4b^4 c^2 = 1 + 2b^2 (q1 + q2) + 4b^4 s^2, s^2 = q1 q2 - c^2: its
    # root a hypot, exact at rho = +-1 and at large variances, where the product form cancels
    b2 = scale * scale
    # (the sum of variances on the variances' own, often smaller, broadcast shapes)
    total = ((0.5 + 2 * b2 * q1) + (0.5 + 2 * b2 * q2)).sqrt_()
    root = torch.hypot(total, 2 * b2 * s)
    return _erf_maps(c, root, b2)


def _erf_maps(c, root, b2):
    """(K, Kdot) of erf from root = sqrt((1 + 2b^2 q1)(1 + 2b^2 q2) - 4b^4 c^2)."""
    k = torch.atan2(2 * b2 * c, root).mul_(2 / PI)
    return k, root.reciprocal_().mul_(4 * b2 / PI)


def gelu(q1, q2, c):
    """phi = x Phi(x) (Tsuchida et al. 2020, arXiv 2002.08517), D = sqrt((1+q1)(1+q2) - c^2)."""
    return _gelu(q1, q2, c, corr_root(q1, q2, c))


def gelu_angle(q1, q2, theta):
    """``gelu`` from the angle of the pair (as ``erf_angle``)."""
    r = geometric_mean(q1, q2)
    return (*_gelu(q1, q2, r * torch.cos(theta), r * sin_of_angle(theta)), None)


def _gelu(q1, q2, c, s):
    p = (1 + q1) * (1 + q2)
    d = torch.hypot((1 + q1 + q2).sqrt(), s)  # D^2 = 1 + q1 + q2 + s^2: no cancellation
    d2 = d * d
    at = torch.atan2(c, d)
    k = c / 4 + ((c * c + q1 * q2 * d2) / (p * d) + c * at) / (2 * PI)
    kdot = 0.25 + at / (2 * PI) + c / (2 * PI * d) * (1 / d2 + (1 - q1 * q2) / p + 1)
    return k, kdot


def sine(q1, q2, c, *, amplitude: float, frequency: float, phase: float):
    """phi = a sin(b x + g), S = q1 + q2, x = b^2 c:
    K = (a^2/2) e^{-b^2 S/2} [e^x - e^{-x} cos 2g] = a^2 e^{-b^2 S/2} [cos^2 g sinh x + sin^2 g cosh x],
    Kdot = a^2 b^2 e^{-b^2 S/2} [cos^2 g cosh x + sin^2 g sinh x] (sums of accurate terms: no
    cancellation at small c, where deep sine networks live)."""
    b2 = frequency * frequency
    x = b2 * c
    half = b2 * (q1 + q2) / 2  # >= |x|
    cos2, sin2 = math.cos(phase) ** 2, math.sin(phase) ** 2
    # e^-half sinh x, e^-half cosh x; beyond |x| = 20 as e^(x - half) -+ e^(-x - half), whose
    # exponents are <= 0 (sinh x alone overflows past 710 while the product is < 1/2)
    big = x.abs() > 20
    up, down = torch.exp(x - half) / 2, torch.exp(-x - half) / 2
    damp = torch.exp(-half)
    sh = torch.where(big, up - down, damp * torch.sinh(x))
    ch = torch.where(big, up + down, damp * torch.cosh(x))
    a2 = amplitude * amplitude
    return a2 * (cos2 * sh + sin2 * ch), a2 * b2 * (cos2 * ch + sin2 * sh)


def exponential(q1, q2, c, *, amplitude: float, rate: float):
    """phi = a exp(b x): K = a^2 exp(b^2 (S/2 + c)), Kdot = b^2 K."""
    k = amplitude**2 * torch.exp(rate * rate * ((q1 + q2) / 2 + c))
    return k, rate * rate * k


def gaussian(q1, q2, c, *, amplitude: float, rate: float):
    """phi = a exp(b x^2), finite for b < 1/(2 max q): K = a^2 det^(-1/2),
    Kdot = 4 a^2 b^2 c det^(-3/2), det = (1 - 2b q1)(1 - 2b q2) - 4 b^2 c^2."""
    det = (1 - 2 * rate * q1) * (1 - 2 * rate * q2) - 4 * rate * rate * c * c
    ok = (det > 0) & (1 - 2 * rate * q1 > 0) & (1 - 2 * rate * q2 > 0)
    det = torch.where(ok, det, torch.full_like(det, math.nan))
    inv = det.rsqrt()
    a2 = amplitude**2
    k = torch.where(ok, a2 * inv, torch.full_like(det, math.inf))
    return k, torch.where(ok, 4 * a2 * rate * rate * c * inv**3, torch.full_like(det, math.inf))


def snake(q1, q2, c, *, a: float):
    """phi = x + sin^2(a x)/a (Ziyin et al. 2020), k = 1/(2a), B = 2a, S = q1 + q2:
    K = c + k^2 - k^2 (e^{-B^2 q1/2} + e^{-B^2 q2/2}) + (k^2/2)(e^{-B^2(S-2c)/2} + e^{-B^2(S+2c)/2}),
    Kdot = 1 + (1/2)(e^{-B^2(S-2c)/2} - e^{-B^2(S+2c)/2})."""
    k2 = 1 / (4 * a * a)
    b2 = 4 * a * a
    s = q1 + q2
    em = torch.exp(-b2 * (s - 2 * c) / 2)
    ep = torch.exp(-b2 * (s + 2 * c) / 2)
    K = c + k2 - k2 * (torch.exp(-b2 * q1 / 2) + torch.exp(-b2 * q2 / 2)) + k2 / 2 * (em + ep)
    return K, 1 + (em - ep) / 2


def _double_factorial_odd(m: int) -> int:
    """(m-1)!! for even m >= 0: E[z^m] of a standard normal."""
    out = 1
    for k in range(m - 1, 0, -2):
        out *= k
    return out


def polynomial(q1, q2, c, *, coefficients: Sequence[float]):
    """phi = sum_i p_i x^i, exactly, by Isserlis' theorem:
    E[u^i v^j] = sum_k C(i,k) C(j,k) k! c^k (i-k-1)!! q1^((i-k)/2) (j-k-1)!! q2^((j-k)/2)."""
    p = [float(x) for x in coefficients]
    K = torch.zeros_like(c)
    Kdot = torch.zeros_like(c)
    for i, pi in enumerate(p):
        for j, pj in enumerate(p):
            if pi == 0 or pj == 0:
                continue
            for k in range(min(i, j) + 1):
                if (i - k) % 2 or (j - k) % 2:
                    continue
                w = (math.comb(i, k) * math.comb(j, k) * math.factorial(k)
                     * _double_factorial_odd(i - k) * _double_factorial_odd(j - k) * pi * pj)
                moments = q1 ** ((i - k) // 2) * q2 ** ((j - k) // 2)
                K = K + w * c**k * moments
                if k:
                    Kdot = Kdot + w * k * c ** (k - 1) * moments
    return K, Kdot


def _scaled_coefficients(a: Sequence[float], q: Tensor) -> list[Tensor]:
    """B_j(q) with phi(sqrt(q) z) = sum_j q^(j/2) B_j(q) h_j(z):
    B_j(q) = sum_i a_(j+2i) (q - 1)^i sqrt((j+2i)! / j!) / (i! 2^i)  (the scaling formula
    He_n(g x) = sum_i g^(n-2i) (g^2 - 1)^i n! / (i! (n-2i)! 2^i) He_(n-2i)(x)). B_j(1) = a_j."""
    n = len(a)
    out = []
    for j in range(n):
        acc = torch.zeros_like(q)
        for i in range((n - 1 - j) // 2, -1, -1):  # Horner in (q - 1)
            k = j + 2 * i
            w = a[k] * math.exp(0.5 * (math.lgamma(k + 1) - math.lgamma(j + 1))
                                - math.lgamma(i + 1)) / 2.0**i
            acc = acc * (q - 1) + w
        out.append(acc)
    return out


def hermite_series_kernel(q1, q2, c, *, coefficients):
    """(K, Kdot) of phi = sum_k a_k h_k: with B_j as in ``_scaled_coefficients``,
    K = sum_j B_j(q1) B_j(q2) c^j,  Kdot = sum_j j B_j(q1) B_j(q2) c^(j-1)  (Mehler: the h_j are
    orthonormal with E[h_i(z1) h_j(z2)] = delta_ij rho^j). At unit variances K = sum_j a_j^2 c^j
    exactly, without the cancellation of the monomial (Isserlis) form at high degree."""
    a = [float(v) for v in coefficients]
    b1, b2 = _scaled_coefficients(a, q1), _scaled_coefficients(a, q2)
    K = torch.zeros_like(c)
    Kdot = torch.zeros_like(c)
    for j in range(len(a) - 1, -1, -1):  # Horner in c
        w = b1[j] * b2[j]
        Kdot = Kdot * c + j * w if j else Kdot
        K = K * c + w
    return K, Kdot


def hermite_coefficients(k: int) -> list[float]:
    """Monomial coefficients of the normalized probabilists' Hermite h_k = He_k / sqrt(k!)."""
    he = np.polynomial.hermite_e.herme2poly([0.0] * k + [1.0])
    return list(he / math.sqrt(math.factorial(k)))


def smoothed(base, noise_std: float):
    """Gaussian smoothing is variance inflation: phi = E_e[psi(x + e)], e ~ N(0, s^2), has
    K_phi(q1, q2, c) = K_psi(q1 + s^2, q2 + s^2, c), and the same for Kdot
    (docs/theory/closed-forms.md#gaussian-smoothing)."""
    s2 = noise_std * noise_std

    def kernel(q1, q2, c, **params):
        return base(q1 + s2, q2 + s2, c, **params)

    return kernel
