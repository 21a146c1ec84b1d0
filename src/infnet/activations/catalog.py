"""The activation catalog: a registry of entries and the lookup ``activation(name, **params)``.

An entry is a few lines (formula, parameters with their paper's defaults, source, kinks, closed
form if one exists); see ``entries.py``. Nothing downstream special-cases a name.
"""

from __future__ import annotations

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
    """Names of the catalog entries (aliases not repeated), sorted."""
    _load()
    return sorted(e.name for e in _REGISTRY.values())


def entry(name: str) -> Entry:
    """The catalog entry for ``name`` (or an alias); a clear error listing close matches."""
    _load()
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
    """
    if isinstance(name_or_fn, Activation):
        return name_or_fn.with_params(**params) if params else name_or_fn
    if callable(name_or_fn):
        return from_function(name_or_fn, **params)
    if not isinstance(name_or_fn, str):
        raise TypeError(f"activation expects a name or a function, got {type(name_or_fn).__name__}")
    e = entry(name_or_fn)
    unknown = set(params) - set(e.defaults)
    if unknown:
        valid = ", ".join(e.defaults) or "none"
        raise TypeError(f"activation {e.name!r} has no parameter {', '.join(sorted(unknown))}; "
                        f"its parameters are: {valid}")
    values = {k: _parameter(e.name, k, v, e.defaults[k]) for k, v in {**e.defaults, **params}.items()}
    if e.check is not None:
        e.check(**values)
    if e.factory is not None:
        return e.factory(e, values)
    kinks = e.kinks(**values) if callable(e.kinks) else e.kinks
    closed, angle = e.closed_form, e.angle_form
    if closed is not None and e.closed_when is not None and not e.closed_when(**values):
        closed = angle = None
    return Activation(fn=e.fn, name=e.name, params=values,
                      kinks=tuple(sorted(float(k) for k in kinks)), jumps=e.jumps,
                      closed_form=closed, angle_form=angle, derivative_fn=e.derivative,
                      formula=e.formula, source=e.source)


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


_LOADED = False


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import entries, entries_literature, gated  # noqa: F401  (register on import)
