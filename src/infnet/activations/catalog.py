"""The activation catalog: a registry of entries and the lookup ``activation(name, **params)``.

An entry is a few lines (formula, parameters with their paper's defaults, source, kinks, closed
form if one exists); see ``entries.py``. Nothing downstream special-cases a name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import Activation
from .user import from_function


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    formula: str
    source: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    kinks: tuple[float, ...] | Callable[..., tuple[float, ...]] = ()
    jumps: bool = False
    closed_form: Callable[..., Any] | None = None
    #: the closed form as a function of the angle, also giving the output angle (exact near
    #: rho = +-1): ``angle_form(q1, q2, theta, **params) -> (K, Kdot, theta_out)``
    angle_form: Callable[..., Any] | None = None
    #: predicate on the parameters: is the closed form valid for them (default: always)
    closed_when: Callable[..., bool] | None = None
    derivative: Callable[..., Any] | None = None
    check: Callable[..., None] | None = None
    aliases: tuple[str, ...] = ()
    #: builds something other than a plain Activation (gated units); gets (entry, params)
    factory: Callable[..., Activation] | None = None

    def build(self, **params) -> Activation:
        """The activation of this entry with ``params`` (checked; defaults for the rest)."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            valid = ", ".join(self.defaults) or "none"
            raise TypeError(f"activation {self.name!r} has no parameter "
                            f"{', '.join(sorted(unknown))}; its parameters are: {valid}")
        values = {k: _parameter(self.name, k, v, self.defaults[k])
                  for k, v in {**self.defaults, **params}.items()}
        if self.check is not None:
            self.check(**values)
        if self.factory is not None:
            return dataclasses.replace(self.factory(self, values), entry=self)
        kinks = self.kinks(**values) if callable(self.kinks) else self.kinks
        closed, angle = self.closed_form, self.angle_form
        if closed is not None and self.closed_when is not None and not self.closed_when(**values):
            closed = angle = None
        return Activation(fn=self.fn, name=self.name, params=values,
                          kinks=tuple(sorted(float(k) for k in kinks)), jumps=self.jumps,
                          closed_form=closed, angle_form=angle, derivative_fn=self.derivative,
                          formula=self.formula, source=self.source, entry=self)

    @staticmethod
    def restore(name: str, params: dict, changed: dict) -> Activation:
        """Unpickle a catalog activation (``Activation.catalog_spec``)."""
        return dataclasses.replace(entry(name).build(**params), **changed)


_REGISTRY: dict[str, Entry] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def register(name: str, fn: Callable[..., Any], *, formula: str, source: str, **kw) -> Entry:
    """Add an entry to the catalog (used by the entry modules)."""
    entry = Entry(name=name, fn=fn, formula=formula, source=source, **kw)
    key = _key(name)
    if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"activation {name!r} is registered twice")
    _REGISTRY[key] = entry
    for alias in entry.aliases:
        _ALIASES[_key(alias)] = key
    return entry


def list_activations() -> list[str]:
    """Names of the catalog entries (aliases not repeated), sorted.

    Returns
    -------
    list of str
        The names that ``infnet.activation`` takes (aliases work there too).

    Examples
    --------
    >>> names = infnet.list_activations()
    >>> "relu" in names and "swish" in names, names == sorted(names)
    (True, True)
    """
    return sorted(e.name for e in _REGISTRY.values())


def entry(name: str) -> Entry:
    """The catalog entry for ``name`` (or an alias); a clear error listing close matches."""
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        names = list(_REGISTRY) + list(_ALIASES)
        close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown activation {name!r}.{hint} "
                       "infnet.list_activations() lists all; a function of your own works too: "
                       "infnet.activation(fn, kinks=[...]).")
    return _REGISTRY[key]


def activation(name_or_fn, **params) -> Activation:
    """An Activation by catalog name with parameters as keywords, or from a torch function.

    ``activation("swish", beta=1.5)``; ``activation(my_fn, kinks=[0.0], name="mine")``.

    Parameters
    ----------
    name_or_fn : str, callable or Activation
        A catalog name or alias (``list_activations``; case, spaces and dashes do not matter),
        a torch function phi (``user.from_function``), or an Activation (returned as it is, or
        rebuilt with ``with_params`` when parameters are given).
    **params
        For a catalog name: the entry's parameters (the paper's defaults for the rest). For a
        function: the keywords of ``user.from_function`` (``kinks``, ``name``, ``jumps``,
        ``derivative``, ``kernel``, ``formula``, ``source``).

    Returns
    -------
    Activation
        The activation, with its kernel maps.

    Raises
    ------
    KeyError
        Unknown catalog name (the message lists close matches).
    TypeError
        ``name_or_fn`` is neither a name nor a callable; an unknown parameter or a value that is
        not a number; a function that is not elementwise or not differentiable by torch.
    ValueError
        A parameter value that is not finite or not allowed; a function that returns NaN.

    Examples
    --------
    >>> print(infnet.activation("swish", beta=1.5))
    Activation(swish, beta=1.5)
    >>> print(infnet.activation("leaky_relu"))  # the default parameter
    Activation(leaky_relu, alpha=0.01)
    >>> mine = infnet.activation(lambda x: torch.tanh(x) + 0.1 * x, name="mine")
    >>> mine.name, mine.is_closed_form
    ('mine', False)
    """
    if isinstance(name_or_fn, Activation):
        return name_or_fn.with_params(**params) if params else name_or_fn
    if callable(name_or_fn):
        return from_function(name_or_fn, **params)
    if not isinstance(name_or_fn, str):
        raise TypeError(f"activation expects a name or a function, got {type(name_or_fn).__name__}")
    e = entry(name_or_fn)
    return e.build(**params)


def _parameter(name: str, key: str, value, default):
    """A parameter value checked where it is given: a finite real number where the default is
    one (a float default makes it a float), finite real numbers where it is a sequence."""
    if isinstance(default, bool) or not isinstance(default, (numbers.Real, tuple, list)):
        return value
    if isinstance(default, (tuple, list)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError(f"parameter {key} of activation {name!r} must be a sequence of "
                            f"numbers, got {value!r}")
        return tuple(_parameter(name, f"{key}[{i}]", v, 0.0) for i, v in enumerate(value))
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy scalars and 0-d tensors
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"parameter {key} of activation {name!r} must be a real number, got "
                        f"{value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"parameter {key} of activation {name!r} must be finite, got {value!r}")
    return float(value) if isinstance(default, float) else value
