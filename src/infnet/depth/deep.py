"""Very deep networks: the depth-L NNGP and NTK of the normalized network on the sphere, at a
cost that does not grow with L (Radhakrishnan, Belkin & Uhler 2023;
docs/theory/infinite-depth.md#deep-kernels-at-any-depth).

    NNGP  S_0 = rho,  S_l = f(S_(l-1));     NTK  K_0 = rho,  K_l = S_l + K_(l-1) f'(S_(l-1)).

Layers are iterated only until each entry can jump over the rest: by the Koenigs linearization
(``limit.koenigs``) at 0 (singular class) or at the attracting fixed point rho* (majority vote),
or once the iteration is stationary in floating point; the marginal class (ReLU) composes tables
of log(theta) (``infnet.marginal``). See ``deep_kernels``.
"""

from __future__ import annotations

import math

import torch

from ..activations import KernelOverflowError
from ..core.checks import all_finite, as_rho, check_depth
from ..numerics.series import horner
from .dual import Schroeder
from .limit import Limit, as_limit
from .marginal import MarginalDepth

Tensor = torch.Tensor

#: from this depth on, the marginal majority class (ReLU) uses repeated squaring of tables in
#: log(theta) (``marginal.MarginalDepth``) instead of layer-by-layer iteration
MARGINAL_DEPTH = 256


def deep_dual(act_or_limit, rho, depth: int, *, method: str = "auto") -> Tensor:
    """The depth-L NNGP of the normalized network on the sphere: f^(depth)(rho).

    f is the normalized dual of the activation (``Activation.dual``), applied ``depth`` times.

    Parameters
    ----------
    act_or_limit : Activation, str, callable or Limit
        The activation (anything ``infnet.activation`` takes), or its ``Limit``.
    rho : tensor, float or array
        Input correlations in [-1, 1].
    depth : int
        The number of hidden layers L >= 0.
    method : {"auto", "iterate"}
        "auto" costs a number of layers that does not grow with depth, except for the
        marginal majority class (f'(1) = 1, e.g. ReLU), which is iterated layer by layer; see
        ``deep_kernels``. "iterate": plain iteration with ``act.dual`` (the exact reference).

    Returns
    -------
    tensor
        f^(depth)(rho), float64, of rho's shape.

    Raises
    ------
    ValueError
        ``method`` or ``depth`` is not valid, rho is not in [-1, 1], or the activation has no
        valid normalized dual (``infnet.limit``).

    Examples
    --------
    >>> rho = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> [round(float(v), 6) for v in infnet.deep_dual("relu", rho, 3)]
    [0.604826, 0.738128, 1.0]
    >>> relu = infnet.activation("relu")
    >>> bool(torch.allclose(infnet.deep_dual(relu, rho, 3), relu.dual(relu.dual(relu.dual(rho)))))
    True
    >>> infnet.deep_dual("erf", rho, 10**6).shape  # as cheap as a few layers
    torch.Size([3])
    """
    return _deep(as_limit(act_or_limit), rho, depth, ntk=False, method=method)[0]


def deep_ntk(act_or_limit, rho, depth: int, *, method: str = "auto") -> Tensor:
    """The depth-L NTK of the normalized network on the sphere.

    K_0 = rho, K_l = S_l + K_(l-1) f'(S_(l-1)), with S_l the NNGP (``deep_dual``)
    (docs/theory/infinite-depth.md#depth-recursion). See ``deep_kernels``.

    Parameters
    ----------
    act_or_limit : Activation, str, callable or Limit
        The activation (anything ``infnet.activation`` takes), or its ``Limit``.
    rho : tensor, float or array
        Input correlations in [-1, 1].
    depth : int
        The number of hidden layers L >= 0.
    method : {"auto", "iterate"}
        As in ``deep_kernels``.

    Returns
    -------
    tensor
        K_L, float64, of rho's shape.

    Raises
    ------
    ValueError
        ``method`` or ``depth`` is not valid, rho is not in [-1, 1], or the activation has no
        valid normalized dual.
    KernelOverflowError
        The NTK leaves float64 (it grows like f'(1)^L where f'(1) > 1).

    Examples
    --------
    >>> rho = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> [round(float(v), 6) for v in infnet.deep_ntk("relu", rho, 3)]  # L + 1 = 4 at rho = 1
    [1.060388, 1.737845, 4.0]
    """
    return _deep(as_limit(act_or_limit), rho, depth, ntk=True, method=method)[1]


def deep_kernels(act_or_limit, rho, depth: int, *, method: str = "auto",
                 ntk=None, theta=None) -> tuple[Tensor, Tensor]:
    """(NNGP, NTK) of the depth-L normalized network as functions of the input correlation.

    The network is normalized and bias-free, on the sphere; f is its normalized dual:

    S_0 = rho, S_l = f(S_(l-1));  K_0 = rho, K_l = S_l + K_(l-1) f'(S_(l-1)).

    method="auto": layers are iterated only until each entry either
      * is stationary in floating point (S_(l+1) == S_l, or a 2-cycle of neighbouring floats):
        then S stays and K_(l+m) = mu^m K_l + S (1 - mu^m) / (1 - mu), mu = f'(S) (majority vote:
        after ~log(eps)/log(f'(rho*)) layers; nearest neighbour: after the orbit reaches 0;
        rho = +-1 fixed points at once), or
      * (singular class) has |S_l| < delta: then with h the Koenigs function, g = h^-1,
        u = h(S_l), f^(m)(S_l) = g(c0^m u) exactly, and
        K_(l+m) = g'(c0^m u) [c0^m K_l h'(S_l) + sum_k w_k u^k T_k(m)],
        w = g / g' as a power series, T_1 = m c0^m, T_k = c0^(m+k-1) (1 - c0^((k-1)m)) /
        (1 - c0^(k-1)) (the NTK sum over the linearized orbit, in closed form), or
      * (majority vote, rho* inside (-1, 1), lambda = f'(rho*) < 1) has |S_l - rho*| < delta:
        the same with the Koenigs function of y -> f(rho* + y) - rho*, lambda for c0, and
        w = (rho* + g) / g', whose constant term adds rho* (1 - lambda^m) / (1 - lambda).
    The marginal majority class (f'(1) = 1, ReLU) has no such shortcut (its correlations approach
    1 like 1/L^2): below depth ``MARGINAL_DEPTH`` it is iterated layer by layer, beyond it the
    depth-2^k maps of the angle are tabulated in log(theta) and composed (``marginal``; ~1e-11
    relative at depth 3000 against 40-digit iteration, where plain float iteration loses up to
    5e-7 near rho = 1). method="iterate": plain iteration with
    ``act.dual`` and ``act.dual_derivative`` (exact, cost linear in depth).

    Parameters
    ----------
    act_or_limit : Activation, str, callable or Limit
        The activation (anything ``infnet.activation`` takes), or its ``Limit``.
    rho : tensor, float or array
        Input correlations in [-1, 1].
    depth : int
        The number of hidden layers L >= 0.
    method : {"auto", "iterate"}
        As above.
    ntk : tensor or float, optional
        The NTK K_0 to start from (default rho). The recursion only carries (S, K), so
        ``deep_kernels(f, S_l, m, ntk=K_l)`` continues a depth-l result by m layers.
    theta : tensor, optional
        The angles arccos(rho) when known more accurately than rho itself holds them (near
        rho = 1; the marginal class works in log(theta)).

    Returns
    -------
    nngp, ntk : tensor
        S_L and K_L, float64, of rho's shape.

    Raises
    ------
    ValueError
        ``method`` or ``depth`` is not valid, rho is not in [-1, 1], or the activation has no
        valid normalized dual.
    KernelOverflowError
        The NTK leaves float64 (it grows like f'(1)^L where f'(1) > 1: e.g. erf beyond depth
        ~1900).
    FloatingPointError
        The NTK has NaN entries (an internal error).

    Examples
    --------
    >>> rho = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> S, K = infnet.deep_kernels("relu", rho, 3)
    >>> [round(float(v), 6) for v in S], [round(float(v), 6) for v in K]
    ([0.604826, 0.738128, 1.0], [1.060388, 1.737845, 4.0])

    Continuing a depth-1 result by two layers gives depth 3:

    >>> S1, K1 = infnet.deep_kernels("relu", rho, 1)
    >>> S3, K3 = infnet.deep_kernels("relu", S1, 2, ntk=K1)
    >>> bool(torch.allclose(S3, S)), bool(torch.allclose(K3, K))
    (True, True)
    >>> try:
    ...     infnet.deep_kernels("erf", rho, 10**6)
    ... except infnet.KernelOverflowError:
    ...     print("the NTK overflows")
    the NTK overflows
    """
    return _deep(as_limit(act_or_limit), rho, depth, ntk=True, method=method, ntk0=ntk,
                 theta=theta)


def _geometric(mu: Tensor, m: int) -> Tensor:
    """(1 - mu^m) / (1 - mu) = sum_(j<m) mu^j, accurate for mu near 1."""
    pos = mu > 0
    lm = torch.log(torch.where(pos, mu, torch.ones_like(mu)))
    accurate = -torch.expm1(m * lm) / -torch.expm1(lm)
    plain = (1 - mu**m) / (1 - mu)
    out = torch.where(pos, accurate, plain)
    return torch.where(mu == 1, torch.full_like(mu, float(m)), out)


def _deep(lim: Limit, rho, depth, *, ntk: bool, method: str,
          ntk0=None, theta=None) -> tuple[Tensor, Tensor | None]:
    depth = check_depth(depth, minimum=0)
    if method not in ("auto", "iterate"):
        raise ValueError(f"method must be 'auto' or 'iterate', got {method!r}")
    rho = as_rho(rho)
    shape = rho.shape
    S = rho.reshape(-1).clone()
    K = None if not ntk else S.clone() if ntk0 is None else \
        torch.as_tensor(ntk0, dtype=S.dtype, device=S.device).expand(shape).reshape(-1).clone()
    if method == "iterate":
        for _ in range(depth):
            if ntk:
                fs, dfs = lim.dual.f_df_exact(S)
                K = fs + K * dfs
            else:
                fs = lim.dual.f_exact(S)
            S = fs
        return S.reshape(shape), (_finite_ntk(lim, K, depth).reshape(shape) if ntk else None)
    if lim.kind == "linear":
        return S.reshape(shape), (depth * S + K).reshape(shape) if ntk else None
    if (lim.marginal and depth >= MARGINAL_DEPTH and lim.activation is not None
            and lim.activation.angle_form is not None):
        th = None if theta is None else torch.as_tensor(theta, dtype=S.dtype).expand(shape).reshape(-1)
        marginal = lim.memo("marginal", lambda: MarginalDepth(lim))
        S, K = marginal.kernels(S, K if ntk else S.clone(), depth, theta=th)
        return S.reshape(shape), (_finite_ntk(lim, K, depth).reshape(shape) if ntk else None)
    dual = lim.dual
    sch = lim.schroeder() if lim.kind == "singular" else None
    star = lim.schroeder_at_fixed_point() if lim.kind == "majority_vote" else None
    idx = torch.arange(S.numel(), device=S.device)
    layer = 0
    while layer < depth and idx.numel():
        # a few layers on the live entries, then look for entries to jump (iterating an entry
        # a little longer than needed changes nothing: the iteration is exact)
        x, k = S[idx], (K[idx] if ntk else None)
        prev = older = x
        for _ in range(min(depth - layer, 64, layer + 1)):
            older, prev = prev, x
            if ntk:
                x, dfx = dual.f_df(prev)
                k = x + k * dfx
            else:
                x = dual.f(prev)
            layer += 1
        S[idx] = x
        if ntk:
            K[idx] = k
        m = depth - layer
        if m == 0:
            break
        stat = (x == prev) | ((x == older) & ((x - prev).abs() <= 4e-16 * x.abs()))
        small = torch.zeros_like(stat)
        if sch is not None:
            small = ~stat & (x.abs() < sch.delta)
        if star is not None:  # near rho*: jump by the linearization there
            small = ~stat & ((x - lim.fixed_point).abs() < star.delta)
        if ntk and bool(stat.any()):
            j = idx[stat]
            mu = dual.df(S[j])
            K[j] = mu**m * K[j] + S[j] * _geometric(mu, m)
        if bool(small.any()):
            j = idx[small]
            if star is not None:
                S[j], kj = _koenigs_jump(star, S[j], K[j] if ntk else None, m, lim.fixed_point)
            else:
                S[j], kj = _koenigs_jump(sch, S[j], K[j] if ntk else None, m)
            if ntk:
                K[j] = kj
        idx = idx[~(stat | small)]
    return S.reshape(shape), (_finite_ntk(lim, K, depth).reshape(shape) if ntk else None)


def _finite_ntk(lim: Limit, K: Tensor, depth: int) -> Tensor:
    """K itself when finite; else a KernelOverflowError that says why (the NNGP stays in
    [-1, 1], but the NTK grows like f'(1)^L on the diagonal when f'(1) > 1)."""
    if all_finite(K):
        return K
    if bool(torch.isnan(K).any()):
        raise FloatingPointError(f"{lim.name}: the depth-{depth} NTK has NaN entries (an internal "
                                 "error: please report it with the inputs)")
    A = lim.slope1
    where = (f"it grows like dual'(1)^L = {A:.6g}^L on and near the diagonal and exceeds float64 "
             f"(1.8e308) from depth ~{709.78 / math.log(A):.0f} on" if A > 1 else
             "it exceeds float64 (1.8e308)")
    raise KernelOverflowError(
        f"the depth-{depth} NTK of {lim.name} overflows: {where}. Use the NNGP "
        "(deep_dual), a smaller depth, or the normalized infinite-depth limit "
        "(fc(act, depth=inf), limit_kernel), whose classifier is the same.")


def _koenigs_jump(sch: Schroeder, x: Tensor, K: Tensor | None, m: int, center: float = 0.0):
    """(S_(l+m), K_(l+m)) from (S_l, K_l) = (x, K) with |x - center| < delta, by the Koenigs
    linearization at the fixed point ``center`` (0 for the singular class, rho* for the majority
    vote; see ``deep_kernels``). With y = S - center, u = h(y), g = h^-1, lambda = f'(center):
    S_(l+m) = center + g(lambda^m u) and
    K_(l+m) = g'(lambda^m u) [lambda^m K_l h'(y) + sum_k w_k u^k T_k(m)],
    w = (center + g) / g' as a power series, T_0 = (1 - lambda^m) / (1 - lambda),
    T_1 = m lambda^m, T_k = lambda^(m+k-1) (1 - lambda^((k-1)m)) / (1 - lambda^(k-1))."""
    lc = math.log(sch.c0)
    y = x - center
    u0 = horner(sch.h, y)
    cm = math.exp(m * lc)  # c0^m (0 when it underflows)
    um = u0 * cm
    S = center + horner(sch.g, um)
    if K is None:
        return S, None
    w = sch.omega + center * sch.chi
    acc = cm * K * horner(sch.dh, y) + w[1] * u0 * (m * cm)
    if center:
        acc = acc + w[0] * (-math.expm1(m * lc) / -math.expm1(lc))
    for k in range(2, len(w)):
        tk = math.exp((m + k - 1) * lc) * math.expm1((k - 1) * m * lc) / math.expm1((k - 1) * lc)
        acc = acc + w[k] * u0**k * tk
    return S, horner(sch.dg, um) * acc
