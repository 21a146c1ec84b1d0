"""The hyperparameters of a network as a Gaussian-process user sees them: the weight and bias
standard deviations shared by its Dense layers (``w_std``, ``b_std``), read from a network and
written into a copy of it.

A fully-connected network of ``infnet.fc`` has one ``w_std`` and one ``b_std`` for all of its
Dense layers, and a GP prior learns those two numbers (the readout included). Networks whose
Dense layers disagree have no single value to learn and are refused, as are layers other than
Dense and activations (branches, LayerNorm, spatial layers), whose gradients are not written
yet.
"""

from __future__ import annotations

import dataclasses

from ..activations.gated import Gated
from ..network import Dense, Network, Nonlinearity

#: the hyperparameters a network can have, in this order
NAMES = ("w_std", "b_std")


def check_chain(net) -> None:
    """Raise TypeError unless ``net`` is a Network of Dense layers and (ungated) activations
    that jump nowhere (a step's Kdot is a Dirac mass, its gradient has no finite value)."""
    if not isinstance(net, Network):
        raise TypeError(f"expected an infnet Network (infnet.fc, infnet.serial), got "
                        f"{type(net).__name__}")
    for layer in net.layers:
        if isinstance(layer, Dense):
            continue
        if isinstance(layer, Nonlinearity) and not isinstance(layer.act, Gated):
            if layer.act.jumps:
                raise TypeError(f"{layer.act.name} jumps: its NTK map holds a Dirac mass and "
                                "has no hyperparameter gradient; use a continuous activation")
            continue
        raise TypeError(f"hyperparameter gradients are written for chains of Dense layers and "
                        f"activations; this network has {layer!r:.80}")


def hyperparameters(net) -> dict[str, float]:
    """The network's shared ``w_std`` and (if its Dense layers have a bias) ``b_std``.

    Raises
    ------
    TypeError
        The network is not a chain of Dense layers and activations (``check_chain``).
    ValueError
        Its Dense layers have different ``w_std`` or ``b_std``, or some have a bias and others
        none.

    Examples
    --------
    >>> infnet.gp.hyperparameters(infnet.fc("relu", 3, w_std=1.5, b_std=0.1))
    {'w_std': 1.5, 'b_std': 0.1}
    """
    check_chain(net)
    dense = [layer for layer in net.layers if isinstance(layer, Dense)]
    if not dense:
        raise ValueError("the network has no Dense layer: nothing to learn")
    out = {}
    for name in NAMES:
        values = {getattr(layer, name) for layer in dense}
        if len(values) > 1:
            raise ValueError(f"the Dense layers have different {name} ({sorted(values, key=str)}):"
                             f" one shared value is learned; build the network with one "
                             f"(infnet.fc(..., {name}=...))")
        value = values.pop()
        if value is not None:
            out[name] = float(value)
    return out


def with_hyperparameters(net, **values) -> Network:
    """A copy of ``net`` whose Dense layers all have the given ``w_std`` / ``b_std``.

    Raises
    ------
    TypeError
        An unknown name, or a network that is not a chain of Dense layers and activations.
    ValueError
        A value that Dense refuses (negative, not finite); ``b_std`` for a network without bias.
    """
    own = hyperparameters(net)
    for name in values:
        if name not in NAMES:
            raise TypeError(f"unknown hyperparameter {name!r}: a network has {', '.join(NAMES)}")
        if name not in own:
            raise ValueError(f"the network has no bias, so no {name} to set; build it with "
                             "b_std=0.0 to learn one")
    layers = [dataclasses.replace(layer, **values) if isinstance(layer, Dense) else layer
              for layer in net.layers]
    return Network(*layers)
