"""The Activation value: an elementwise function with its infinite-width kernel maps.

Everything generic lives here once: argument checking, closed form or quadrature, duals.
A catalog entry only supplies the math (see ``catalog``). The checks (the moments, singular
points and divergence) are in ``checks``, the quadrature without a closed form in ``numerical``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.checks import as_rho
from ..numerics import quadrature
from . import checks, numerical
from .checks import Singularity, _check_moments

Tensor = torch.Tensor

KernelFn = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation phi with its NNGP and NTK maps.

    A frozen value: the function, its parameters, where it is not smooth, and its kernel maps
    (closed form where the catalog has one, polar quadrature otherwise). Build one with
    ``infnet.activation`` (a catalog name or a torch function) rather than directly.

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
    derivative_fn : callable, optional
        ``derivative_fn(x, **params)``, phi'; autograd of ``fn`` when absent.
    formula : str
        The formula of phi, for display.
    source : str
        Where phi comes from (paper, or "user").
    gain : float
        The activation is ``gain * fn``; the kernels K and Kdot scale by gain^2.
    singular : tuple of Singularity
        Singular points of phi or phi' (found for user functions, ``user.from_function``),
        which decide the Gaussian expectations that diverge (``check_divergence``).

    Examples
    --------
    >>> relu = infnet.activation("relu")
    >>> relu.name, relu.kinks, relu.is_closed_form
    ('relu', (0.0,), True)
    >>> x = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    >>> relu(x).tolist(), relu.derivative(x).tolist()
    ([0.0, 2.0], [0.0, 1.0])
    >>> print(relu.scaled(2.0))
    Activation(relu, gain=2)
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
    #: the catalog entry that built it (``catalog.Entry``; None for user functions): what
    #: ``with_params`` rebuilds from and what a pickle stores
    entry: Any = field(default=None, compare=False, repr=False)

    # ---- the function -------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        y = self.fn(x, **self.params)
        return y if self.gain == 1.0 else self.gain * y

    def derivative(self, x: Tensor) -> Tensor:
        """phi'(x): the given derivative, else autograd (a kink gets a one-sided value)."""
        if self.derivative_fn is not None:
            g = self.derivative_fn(x, **self.params)
        elif numerical.tangent(x) is not None:  # forward-mode dual: phi'' times its tangent
            g = numerical.dual_derivative(self, x)
        else:
            # an input that is itself differentiated (the hyperparameter gradients of
            # ``infnet.gp``) keeps its graph, so that phi'' follows; otherwise a leaf copy
            keep = x.requires_grad and torch.is_grad_enabled()
            with torch.enable_grad():
                x = x if keep else x.detach().requires_grad_(True)
                y = self.fn(x, **self.params)
                # an output that does not depend on x differentiably (a step written as a
                # comparison) has derivative 0 wherever it is defined
                g = (torch.autograd.grad(y.sum(), x, allow_unused=True, create_graph=keep)[0]
                     if y.requires_grad else None)
            g = torch.zeros_like(x) if g is None else g
        return g if self.gain == 1.0 else self.gain * g

    @property
    def is_closed_form(self) -> bool:
        return self.closed_form is not None

    # ---- kernel maps ----------------------------------------------------------------------
    def kernel(self, q1, q2, c, *, check: bool = True) -> tuple[Tensor, Tensor]:
        """The NNGP and NTK maps (K, Kdot) at the moments (q1, q2, c).

        (K, Kdot) = (E[phi(u) phi(v)], E[phi'(u) phi'(v)]) for (u, v) ~ N(0, [[q1, c], [c, q2]]).
        Closed form where the catalog has one, otherwise polar quadrature split at the kinks
        (docs/theory/numerical-duals.md#polar-quadrature).

        Parameters
        ----------
        q1, q2 : tensor or float
            The variances of u and v (>= 0).
        c : tensor or float
            The covariance of u and v, |c| <= sqrt(q1 q2) (rounding beyond it is clamped).
        check : bool
            Check the moments and the results (False, for closed forms: the caller guarantees
            finite float64 tensors with |c| <= sqrt(q1 q2) up to rounding, and checks the
            results; a dozen passes over the entries fewer).

        Returns
        -------
        K, Kdot : tensor
            Broadcast tensors of the arguments' shape, computed and returned in float64 on their
            device.

        Raises
        ------
        ValueError
            A moment is NaN or inf, a variance is negative, or |c| > sqrt(q1 q2).
        KernelOverflowError
            The expectation diverges (a singularity, growth in the tails) or overflows float64,
            e.g. Kdot at c = +-sqrt(q1 q2) for an activation that jumps.
        NotImplementedError
            The activation jumps and has no closed form: Kdot holds a Dirac mass.
        QuadratureError
            The quadrature cannot resolve the expectation to machine precision.

        Examples
        --------
        >>> relu = infnet.activation("relu")
        >>> K, Kdot = relu.kernel(1.0, 1.0, 0.0)
        >>> round(float(K), 6), round(float(Kdot), 6)  # 1/(2 pi) and 1/4
        (0.159155, 0.25)
        >>> c = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        >>> K, Kdot = relu.kernel(1.0, 1.0, c)
        >>> K.shape, K.dtype
        (torch.Size([3]), torch.float64)
        >>> round(float(K[2]), 6)  # E[relu(z)^2] = 1/2
        0.5
        """
        if not check and self.closed_form is not None and self.gain == 1.0:
            return self.closed_form(q1, q2, c, **self.params)
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
        return numerical.numerical_kernel(self, q1, q2, c, nodes_angle, nodes_radius, theta)

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
                out = numerical.output_angle(self, K, q1, q2, theta, q1_out, q2_out)
            elif bool(out.isnan().any()):  # ... or some of it (NaN: its formula lost digits)
                lost = out.isnan()
                out = out.clone()
                out[lost] = numerical.output_angle(
                    self, *(t.expand(lost.shape)[lost] for t in (K, q1, q2, theta,
                                                                  q1_out, q2_out)))
            return K, Kdot, out
        if self.closed_form is not None:
            K, Kdot = self.kernel(q1, q2, c)
        else:
            q1c, q2c, cc = _check_moments(q1, q2, c)
            K, Kdot = self._checked(*numerical.pair_kernel(self, q1c, q2c, cc, theta), q1c, q2c)
        return K, Kdot, numerical.output_angle(self, K, q1, q2, theta, q1_out, q2_out)

    def diagonal_kernel(self, q) -> tuple[Tensor, Tensor]:
        """(K, Kdot) at u = v: (E[phi(sqrt(q) z)^2], E[phi'(sqrt(q) z)^2]), by 1-D quadrature
        where there is no closed form (the diagonal of the kernel maps)."""
        q = torch.as_tensor(q, dtype=torch.float64) if not torch.is_tensor(q) else q
        if self.closed_form is not None or self.jumps:
            return self.kernel(q, q, q)
        return numerical.diagonal_kernel(self, q)

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
        checks.check_divergence(self, q1, q2, c, derivative)

    def _checked(self, K: Tensor, Kdot: Tensor, q1: Tensor, q2: Tensor):
        return checks.check_finite(self, K, Kdot, q1, q2)

    # ---- normalized dual --------------------------------------------------------------------
    def dual(self, rho) -> Tensor:
        """The normalized dual f(rho) (Daniely et al. 2016).

        f(rho) = E[phi(u) phi(v)] / E[phi(z)^2] for unit-variance u, v of correlation rho, so
        that f(1) = 1.

        Parameters
        ----------
        rho : tensor, float or array
            Correlations in [-1, 1] (rounding beyond +-1 by ``CORR_SLACK`` is clamped).

        Returns
        -------
        tensor
            f(rho), float64, of rho's shape.

        Raises
        ------
        ValueError
            rho holds NaN, inf or values beyond +-1, or E[phi(z)^2] = 0 (no normalized dual).
        KernelOverflowError
            E[phi(u) phi(v)] diverges at unit variance.

        Examples
        --------
        >>> relu = infnet.activation("relu")
        >>> rho = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> [round(float(v), 6) for v in relu.dual(rho)]  # 1/pi and 1
        [0.31831, 1.0]
        >>> round(float(infnet.activation("identity").dual(0.3)), 6)
        0.3
        """
        rho = as_rho(rho)
        one = torch.ones((), dtype=rho.dtype, device=rho.device)
        return self.nngp_map(one, one, rho) / self._norm2(one)

    def dual_derivative(self, rho) -> Tensor:
        """d dual / d rho = E[phi'(u) phi'(v)] / E[phi(z)^2] (Price's theorem)."""
        rho = as_rho(rho)
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
        """The same catalog activation with other parameters.

        Kinks and closed forms follow the new parameters; the gain is kept, and parameters not
        given keep their values.

        Parameters
        ----------
        **params
            New values of the catalog entry's parameters, by name.

        Returns
        -------
        Activation
            The rebuilt activation.

        Raises
        ------
        ValueError
            The activation is not a catalog activation (a user function, or a renamed one such
            as ``sine_activation``), or a parameter value is not finite or not allowed.
        TypeError
            The entry has no parameter of a given name, or a value is not a real number.

        Examples
        --------
        >>> swish = infnet.activation("swish", beta=1.5)
        >>> print(swish.with_params(beta=2.0))
        Activation(swish, beta=2.0)
        >>> print(infnet.activation("leaky_relu").scaled(2.0).with_params(alpha=0.2))
        Activation(leaky_relu, alpha=0.2, gain=2)
        """
        if self._own_entry() is None:
            raise ValueError(f"{self.name!r} is not a catalog activation, so it cannot be rebuilt "
                             "with other parameters: build it again (infnet.activation(fn, ...))")
        return dataclasses.replace(self.entry.build(**{**self.params, **params}), gain=self.gain)

    def _own_entry(self):
        """The catalog entry, where this activation still bears its name."""
        return self.entry if self.entry is not None and self.entry.name == self.name else None

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

    def catalog_spec(self):
        """(name, params, changed plain fields) when this is the catalog's activation of that
        name (the same functions), possibly rescaled or re-described; else None. What a
        pickle stores, and what the kernel store fingerprints."""
        e = self._own_entry()
        if e is None or (e.factory is None and self.fn is not e.fn):
            return None
        try:
            base = e.build(**self.params)
        except (TypeError, ValueError):
            return None
        if type(base) is not type(self):
            return None
        if e.factory is None and any(getattr(self, f) is not getattr(base, f)
                                     for f in ("closed_form", "angle_form", "derivative_fn")):
            return None  # (a factory builds new functions each time: its name and params decide)
        changed = {f: getattr(self, f) for f in _PLAIN_FIELDS if getattr(self, f) != getattr(base, f)}
        return self.name, dict(self.params), changed

    def __reduce_ex__(self, protocol):
        """Pickle a catalog activation as its name, parameters and changed plain fields (its
        functions are lambdas of the catalog, which pickle cannot store by reference); any
        other activation pickles field by field (its functions must be importable)."""
        spec = self.catalog_spec()
        if spec is not None:
            return (type(self.entry).restore, spec)
        return super().__reduce_ex__(protocol)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if self.gain != 1.0:
            args = ", ".join(filter(None, [args, f"gain={self.gain:.6g}"]))
        return f"Activation({self.name}{', ' + args if args else ''})"


_PLAIN_FIELDS = ("kinks", "jumps", "formula", "source", "gain")
