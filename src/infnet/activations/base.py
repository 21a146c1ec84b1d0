"""The Activation value: an elementwise function with its infinite-width kernel maps.

Everything generic lives here once: argument checking, closed form or quadrature, duals.
A catalog entry only supplies the math (see ``catalog``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from . import gauss1d, quadrature
from .errors import KernelOverflowError, QuadratureError  # noqa: F401  (re-exported)
from .moments import corr_angle, geometric_mean

Tensor = torch.Tensor
KernelFn = Callable[..., tuple[Tensor, Tensor]]

#: output angles within this of 0 or pi are recomputed without cancellation (``pair_map``)
NEAR_ANGLE = 1e-3
#: relative slack allowed for |c| > sqrt(q1 q2) from rounding before it is an error
_CORR_SLACK = 1e-9


@dataclass(frozen=True)
class Singularity:
    """A point where |phi| ~ |x - at|^order or |phi'| ~ |x - at|^derivative_order with a
    negative order (0: bounded there). E|u - at|^p is finite iff p > -1, which decides the
    Gaussian expectations that diverge (``Activation.check_divergence``)."""

    at: float
    order: float = 0.0
    derivative_order: float = 0.0


@dataclass(frozen=True)
class Activation:
    """An elementwise activation phi with its NNGP and NTK maps.

    Parameters
    ----------
    fn : callable
        ``fn(x, **params)`` on torch tensors, elementwise and torch-traceable.
    name : str
        Catalog or user name.
    params : mapping
        Parameter values passed to ``fn`` (and to ``closed_form``).
    kinks : sequence of float
        Points where phi or phi' is not smooth (jumps of phi' or of phi itself).
    jumps : bool
        True when phi itself is discontinuous at a kink (step, sign): then phi' holds a Dirac
        mass and Kdot needs a closed form.
    closed_form : callable, optional
        ``closed_form(q1, q2, c, **params) -> (K, Kdot)``; the quadrature is used otherwise.
    angle_form : callable, optional
        ``angle_form(q1, q2, theta, **params) -> (K, Kdot, theta_out)``: the closed form in terms
        of the angle, with the output angle, both exact near rho = +-1 (kinked units need it);
        theta_out None leaves the output angle to the generic rule (``pair_map``).
    derivative : callable, optional
        ``derivative(x, **params)``; autograd of ``fn`` when absent.
    """

    fn: Callable[..., Tensor]
    name: str = "custom"
    params: Mapping[str, Any] = field(default_factory=dict)
    kinks: tuple[float, ...] = ()
    jumps: bool = False
    closed_form: KernelFn | None = None
    angle_form: KernelFn | None = None
    derivative_fn: Callable[..., Tensor] | None = None
    formula: str = ""
    source: str = ""
    gain: float = 1.0  # the activation is gain * fn; kernels scale by gain^2
    #: singular points of phi or phi' (found for user functions, ``user.from_function``)
    singular: tuple[Singularity, ...] = ()

    # ---- the function -------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        y = self.fn(x, **self.params)
        return y if self.gain == 1.0 else self.gain * y

    def derivative(self, x: Tensor) -> Tensor:
        """phi'(x): the given derivative, else autograd (a kink gets a one-sided value)."""
        if self.derivative_fn is not None:
            g = self.derivative_fn(x, **self.params)
        else:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                y = self.fn(x, **self.params)
                # an output that does not depend on x differentiably (a step written as a
                # comparison) has derivative 0 wherever it is defined
                g = (torch.autograd.grad(y.sum(), x, allow_unused=True)[0]
                     if y.requires_grad else None)
            g = torch.zeros_like(x) if g is None else g
        return g if self.gain == 1.0 else self.gain * g

    @property
    def is_closed_form(self) -> bool:
        return self.closed_form is not None

    # ---- kernel maps ----------------------------------------------------------------------
    def kernel(self, q1, q2, c) -> tuple[Tensor, Tensor]:
        """(K, Kdot) = (E[phi(u) phi(v)], E[phi'(u) phi'(v)]) for (u, v) ~ N(0, [[q1, c], [c, q2]]).

        Broadcasting tensors or numbers, computed and returned in float64 on their device;
        closed form where the catalog has one, otherwise polar quadrature split at the kinks
        (REFERENCES.md section 3).
        """
        q1, q2, c = _check_moments(q1, q2, c)
        if self.closed_form is not None:
            K, Kdot = self.closed_form(q1, q2, c, **self.params)
            K, Kdot = torch.broadcast_tensors(K, Kdot, c)[:2]
            if self.gain != 1.0:
                K, Kdot = self.gain**2 * K, self.gain**2 * Kdot
        else:
            K, Kdot = self.numerical_kernel(q1, q2, c)
        return self._checked(K, Kdot, q1, q2)

    def numerical_kernel(self, q1, q2, c, nodes_angle: int | None = None,
                         nodes_radius: int | None = None, theta=None) -> tuple[Tensor, Tensor]:
        """(K, Kdot) by quadrature, whether or not a closed form exists (for checks). ``theta``:
        the angle of the pairs when known more accurately than from c (near rho = +-1)."""
        q1, q2, c = _check_moments(q1, q2, c)
        self.check_divergence(q1, q2, c, derivative=True)
        if self.jumps:
            raise NotImplementedError(
                f"activation {self.name!r} is discontinuous at {list(self.kinks)}: its derivative "
                "holds a Dirac mass, so Kdot needs a closed form: give kernel=... (a function "
                "(q1, q2, c) -> (K, Kdot)) or use a continuous activation. The NNGP alone "
                "needs no Kdot (act.nngp_map, net.kernel(x, get='nngp')).")
        K, Kdot = quadrature.gaussian_expectation(
            [(self, self), (self.derivative, self.derivative)], q1, q2, c, self.kinks,
            theta=theta, label=f"E[phi(u) phi(v)] or E[phi'(u) phi'(v)] of {self.name!r}",
            **_nodes(nodes_angle, nodes_radius))
        return K, Kdot

    def pair_map(self, q1, q2, c, theta, q1_out, q2_out) -> tuple[Tensor, Tensor, Tensor]:
        """One activation layer on pairs whose angle theta is known (to ~1e-16 absolute, also
        near rho = +-1 where c has lost it): (K, Kdot, theta_out), theta_out the angle of the
        outputs, whose variances q1_out, q2_out the caller has from the diagonal pass.

        The angle form gives theta_out exactly; otherwise it is arccos(K / sqrt(q1_out q2_out)),
        and where that is within ``NEAR_ANGLE`` of 0 or pi (where it would lose digits) it is
        recomputed from 1 -+ rho' = E[(phi(u)/a -+ phi(v)/b)^2] / 2, a = sqrt(q1_out),
        b = sqrt(q2_out), integrands without cancellation.
        """
        if self.angle_form is not None:
            q1, q2, theta = torch.broadcast_tensors(q1, q2, theta)
            K, Kdot, out = self.angle_form(q1, q2, theta, **self.params)
            K, Kdot = self._checked(self.gain**2 * K, self.gain**2 * Kdot, q1, q2)
            if out is None:  # an angle form that leaves the output angle to the generic rule
                out = self._output_angle(K, q1, q2, theta, q1_out, q2_out)
            return K, Kdot, out
        if self.closed_form is not None:
            K, Kdot = self.kernel(q1, q2, c)
        else:
            q1c, q2c, cc = _check_moments(q1, q2, c)
            K, Kdot = self._checked(*self.numerical_kernel(q1c, q2c, cc, theta=theta), q1c, q2c)
        return K, Kdot, self._output_angle(K, q1, q2, theta, q1_out, q2_out)

    def _output_angle(self, K, q1, q2, theta, q1_out, q2_out) -> Tensor:
        q1, q2, theta, q1_out, q2_out = torch.broadcast_tensors(q1, q2, theta, q1_out, q2_out)
        out = corr_angle(q1_out, q2_out, K)[1].clone()
        same = (theta == 0) & (q1 == q2)  # one input twice stays one input
        out[same] = 0.0
        zero = (q1_out == 0) | (q2_out == 0)  # a zero output is at angle pi/2 to everything
        out[zero & ~same] = math.pi / 2
        near = ((out < NEAR_ANGLE) | (out > math.pi - NEAR_ANGLE)) & ~same & ~zero
        if bool(near.any()) and not self.jumps:
            sel = near.nonzero(as_tuple=True)
            gap, gap_plus = quadrature.gaussian_expectation(
                [lambda u, v, a, b: (self(u) / a - self(v) / b) ** 2,
                 lambda u, v, a, b: (self(u) / a + self(v) / b) ** 2],
                q1[sel], q2[sel], (q1[sel] * q2[sel]).sqrt() * torch.cos(theta[sel]), self.kinks,
                theta=theta[sel], entry_data=(q1_out[sel].sqrt(), q2_out[sel].sqrt()),
                label=f"the output angle of {self.name!r}")
            out[sel] = 2 * torch.atan2((gap / 2).clamp(min=0).sqrt(),
                                       (gap_plus / 2).clamp(min=0).sqrt())
        return out

    def diagonal_kernel(self, q) -> tuple[Tensor, Tensor]:
        """(K, Kdot) at u = v: (E[phi(sqrt(q) z)^2], E[phi'(sqrt(q) z)^2]), by 1-D quadrature
        where there is no closed form (the diagonal of the kernel maps)."""
        q = torch.as_tensor(q, dtype=torch.float64) if not torch.is_tensor(q) else q
        if self.closed_form is not None or self.jumps:
            return self.kernel(q, q, q)
        q, _, _ = _check_moments(q, q, q)
        self.check_divergence(q, q, q, derivative=True)
        K, Kdot = gauss1d.gaussian_expectation_1d(
            [lambda x: self(x) ** 2, lambda x: self.derivative(x) ** 2], q, self.kinks,
            label=f"E[phi(x)^2] or E[phi'(x)^2] of {self.name!r}")
        return self._checked(K.reshape(q.shape), Kdot.reshape(q.shape), q, q)

    def nngp_map(self, q1, q2, c) -> Tensor:
        """K = E[phi(u) phi(v)] alone (finite also where Kdot is not, as for step and sign)."""
        q1, q2, c = _check_moments(q1, q2, c)
        if self.closed_form is not None:
            K = self.closed_form(q1, q2, c, **self.params)[0] * self.gain**2
            K = torch.broadcast_tensors(K, c)[0]
        else:
            self.check_divergence(q1, q2, c, derivative=False)
            K, = quadrature.gaussian_expectation([(self, self)], q1, q2, c, self.kinks,
                                                 label=f"E[phi(u) phi(v)] of {self.name!r}")
        return self._checked(K, torch.zeros_like(K), q1, q2)[0]

    def variance_map(self, q) -> Tensor:
        """Q(q) = E[phi(sqrt(q) z)^2], the diagonal of the NNGP map."""
        q = torch.as_tensor(q, dtype=torch.float64) if not torch.is_tensor(q) else q
        if self.closed_form is not None or self.jumps:
            return self.nngp_map(q, q, q)
        return self.diagonal_kernel(q)[0]

    def check_divergence(self, q1: Tensor, q2: Tensor, c: Tensor, derivative: bool) -> None:
        """Raise KernelOverflowError where a singularity makes E[phi(u) phi(v)] (and, with
        ``derivative``, E[phi'(u) phi'(v)]) infinite: an order <= -1 at every correlation; an
        order <= -1/2 where the two inputs reach the singular point together (|rho| = 1 and
        u = v, or the point 0); an input of variance 0 sitting at the point."""
        if not self.singular:
            return
        q1, q2, c = torch.broadcast_tensors(q1, q2, c)
        rho1 = (c.abs() >= geometric_mean(q1, q2)) & (q1 > 0)
        for s in self.singular:
            parts = [("phi", s.order)] + ([("phi'", s.derivative_order)] if derivative else [])
            for which, order in parts:
                if order >= 0:
                    continue
                together = rho1 & ((s.at == 0.0) | ((c > 0) & (q1 == q2)))
                bad = (((q1 == 0) | (q2 == 0)) & (s.at == 0.0)) | (together & (2 * order <= -0.999))
                if order <= -0.999:
                    bad = torch.ones_like(bad)
                if bool(bad.any()):
                    i = bad.reshape(-1).nonzero()[0]
                    at = ", ".join(f"{n}={float(t.reshape(-1)[i]):.6g}"
                                   for n, t in (("q1", q1), ("q2", q2), ("c", c)))
                    raise KernelOverflowError(
                        f"E[{which}(u) {which}(v)] of {self.name!r} diverges at {at}: |{which}(x)| "
                        f"grows like |x - {s.at:g}|^{order:.3g} near x = {s.at:g}, and E|u - "
                        f"{s.at:g}|^p is infinite for p <= -1 (p = {order:.3g} for one input, "
                        f"{2 * order:.3g} where both reach the point together). Use an activation "
                        "that is bounded there, or the NNGP where only phi' is singular.")

    def _checked(self, K: Tensor, Kdot: Tensor, q1: Tensor, q2: Tensor):
        if all_finite(K) and all_finite(Kdot):
            return K, Kdot
        bad = ~(torch.isfinite(K) & torch.isfinite(Kdot))
        if bool(bad.any()):
            on_diag = bool(torch.isinf(Kdot[bad]).all()) and self.jumps
            where = (f"q1={float(q1.broadcast_to(K.shape)[bad][0]):.6g}, "
                     f"q2={float(q2.broadcast_to(K.shape)[bad][0]):.6g}")
            if on_diag:
                raise KernelOverflowError(
                    f"Kdot of {self.name!r} is infinite at correlation +-1 ({where}): its "
                    "derivative is a Dirac mass, so the NTK diagonal diverges. Use the NNGP, or a "
                    "smooth version (erf for sign, sigmoid for step).")
            raise KernelOverflowError(
                f"the kernel of {self.name!r} is not finite at {where}: its Gaussian expectation "
                "diverges or overflows at these variances. Lower w_std/b_std or the input scale.")
        return K, Kdot

    # ---- normalized dual --------------------------------------------------------------------
    def dual(self, rho) -> Tensor:
        """Normalized dual (Daniely et al. 2016): E[phi(u) phi(v)] / E[phi(z)^2] at unit variance."""
        rho = _as_rho(rho)
        one = torch.ones((), dtype=rho.dtype, device=rho.device)
        return self.nngp_map(one, one, rho) / self._norm2(one)

    def dual_derivative(self, rho) -> Tensor:
        """d dual / d rho = E[phi'(u) phi'(v)] / E[phi(z)^2] (Price's theorem)."""
        rho = _as_rho(rho)
        one = torch.ones((), dtype=rho.dtype, device=rho.device)
        _, Kdot = self.kernel(one, one, rho)
        return Kdot / self._norm2(one)

    def _norm2(self, one: Tensor) -> Tensor:
        n2 = self.nngp_map(one, one, one)  # the same rule as the duals: dual(1) = 1 exactly
        if not float(n2) > 0:
            raise ValueError(f"activation {self.name!r} has E[phi(z)^2] = 0: no normalized dual")
        return n2

    # ---- variants ---------------------------------------------------------------------------
    def with_params(self, **params) -> Activation:
        from .catalog import activation  # rebuild through the catalog so kinks follow params

        return dataclasses.replace(activation(self.name, **{**self.params, **params}),
                                   gain=self.gain)

    def scaled(self, gain: float) -> Activation:
        """gain * phi: K and Kdot scale by gain^2."""
        gain = float(gain)
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a finite number > 0, got {gain!r}")
        return dataclasses.replace(self, gain=self.gain * gain)

    def normalized(self) -> Activation:
        """phi / sqrt(E[phi(z)^2]): unit second moment at unit variance, so that dual(1) = K(1)
        and a network of it with w_std = 1 keeps unit-variance inputs at unit variance."""
        one = torch.ones((), dtype=torch.float64)
        return self.scaled(1.0 / math.sqrt(float(self._norm2(one))))

    def __reduce_ex__(self, protocol):
        """Pickle a catalog activation as its name, parameters and changed plain fields (its
        functions are lambdas of the catalog, which pickle cannot store by reference); any
        other activation pickles field by field (its functions must be importable)."""
        spec = _catalog_spec(self)
        if spec is not None:
            return (_from_catalog, spec)
        return super().__reduce_ex__(protocol)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if self.gain != 1.0:
            args = ", ".join(filter(None, [args, f"gain={self.gain:.6g}"]))
        return f"Activation({self.name}{', ' + args if args else ''})"


_PLAIN_FIELDS = ("kinks", "jumps", "formula", "source", "gain")


def _catalog_spec(act: Activation):
    """(name, params, changed plain fields) when ``act`` is the catalog's activation of that
    name (same functions), possibly rescaled or re-described; else None."""
    from .catalog import activation, entry

    try:
        e = entry(act.name)
    except KeyError:
        return None
    if e.factory is None and act.fn is not e.fn:
        return None
    try:
        base = activation(act.name, **act.params)
    except (TypeError, ValueError):
        return None
    if type(base) is not type(act):
        return None
    if e.factory is None and any(getattr(act, f) is not getattr(base, f)
                                 for f in ("closed_form", "angle_form", "derivative_fn")):
        return None  # (a factory builds new functions each time: its name and params decide)
    changed = {f: getattr(act, f) for f in _PLAIN_FIELDS if getattr(act, f) != getattr(base, f)}
    return act.name, dict(act.params), changed


def _from_catalog(name: str, params: dict, changed: dict) -> Activation:
    from .catalog import activation

    return dataclasses.replace(activation(name, **params), **changed)


def all_finite(t: Tensor) -> bool:
    """One pass (min and max; NaN propagates) instead of isfinite's several."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def _nodes(nodes_angle, nodes_radius) -> dict:
    return {"nodes_angle": nodes_angle or quadrature.NODES_ANGLE,
            "nodes_radius": nodes_radius or quadrature.NODES_RADIUS}


def _as_rho(rho) -> Tensor:
    rho = torch.as_tensor(rho, dtype=torch.float64) if not torch.is_tensor(rho) else rho
    rho = rho.to(torch.float64)
    if not all_finite(rho):
        raise ValueError("rho contains NaN or inf")
    if bool((rho.abs() > 1 + _CORR_SLACK).any()):
        raise ValueError(f"correlations must lie in [-1, 1]; got max |rho| = "
                         f"{float(rho.abs().max()):.6g}")
    return rho.clamp(-1.0, 1.0)


def _check_moments(q1, q2, c) -> tuple[Tensor, Tensor, Tensor]:
    """Float tensors with q >= 0 and |c| <= sqrt(q1 q2) (rounding clamped, violations raised)."""
    ref = next((t for t in (c, q1, q2) if torch.is_tensor(t)), None)
    # float64 whatever the inputs: a float32 expectation could not be exact
    dtype = torch.float64
    device = ref.device if ref is not None else None
    q1, q2, c = (torch.as_tensor(t, dtype=dtype, device=device) for t in (q1, q2, c))
    for name, t in (("q1", q1), ("q2", q2), ("c", c)):
        if not all_finite(t):
            raise ValueError(f"{name} contains NaN or inf; check the inputs and the layer variances")
    if bool((q1 < 0).any()) or bool((q2 < 0).any()):
        raise ValueError("variances q1, q2 must be >= 0")
    bound = geometric_mean(q1, q2)
    if bool((c.abs() > bound * (1 + _CORR_SLACK) + 1e-300).any()):
        raise ValueError("|c| > sqrt(q1 q2): (q1, q2, c) is not a covariance matrix")
    c = torch.maximum(torch.minimum(c, bound), -bound)
    return q1, q2, c

