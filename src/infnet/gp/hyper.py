"""The hyperparameters of a network as a Gaussian-process user sees them: the weight and bias
standard deviations shared by its Dense layers (``w_std``, ``b_std``), and the continuous
parameters of its activation (swish's ``beta``, a tempered sigmoid's ``temperature``), read from
a network and written into a copy of it.

A fully-connected network of ``infnet.fc`` has one ``w_std`` and one ``b_std`` for all of its
Dense layers, and a GP prior learns those two numbers (the readout included); a convolutional
one (``network.cnn``, ``myrtle``) shares them between its convolutions (``Conv``,
``ConvLocal``) and its readout. Networks whose layers disagree have no single value to learn
and are refused. Residual blocks and other branches (``network.residual``, ``branch_sum``,
``parallel``), ``LayerNorm`` and the spatial layers without parameters (``AvgPool``,
``GlobalAvgPool``, ``Flatten``) may sit between them: the weights of branches stay fixed.

An activation parameter is learned when every activation layer is the same catalog activation
(one value shared by all of them), and when it does not move a kink of a unit without a closed
form (hardtanh's ``max_val``: the jump of phi' would move with it, which the quadrature's fixed
breakpoints do not follow).
"""

from __future__ import annotations

import dataclasses
import math

from ..activations.gated import Gated
from ..network import (
    AvgPool,
    Branches,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    LayerNorm,
    Network,
    Nonlinearity,
)

#: the hyperparameters of the Dense layers, in this order
NAMES = ("w_std", "b_std")
#: the layers that have them (ConvLocal is a Conv)
WEIGHTED = (Dense, Conv)


def check_chain(net) -> None:
    """Raise TypeError unless ``net`` is a Network of Dense and convolutional layers, (ungated)
    activations that jump nowhere (a step's Kdot is a Dirac mass, its gradient has no finite
    value), LayerNorm, pooling, Flatten and branches of such layers."""
    if not isinstance(net, Network):
        raise TypeError(f"expected an infnet Network (infnet.fc, infnet.serial), got "
                        f"{type(net).__name__}")
    for layer in leaves(net.layers):
        if isinstance(layer, (*WEIGHTED, LayerNorm, AvgPool, GlobalAvgPool, Flatten)):
            continue
        if isinstance(layer, Nonlinearity) and not isinstance(layer.act, Gated):
            if layer.act.jumps:
                raise TypeError(f"{layer.act.name} jumps: its NTK map holds a Dirac mass and "
                                "has no hyperparameter gradient; use a continuous activation")
            continue
        raise TypeError(f"hyperparameter gradients are written for networks of Dense and Conv "
                        f"layers, activations, LayerNorm, pooling and branches of them; this "
                        f"network has {layer!r:.80}")


def leaves(layers):
    """The layers in order, those of branches (``Branches``) in place of the block."""
    for layer in layers:
        if isinstance(layer, Branches):
            for branch in layer.branches:
                yield from leaves(branch.layers)
        else:
            yield layer


def hyperparameters(net) -> dict[str, float]:
    """The network's shared ``w_std`` and (if its Dense layers have a bias) ``b_std``.

    Raises
    ------
    TypeError
        The network holds a layer other than Dense, activations, LayerNorm and branches
        (``check_chain``).
    ValueError
        Its Dense layers have different ``w_std`` or ``b_std``, or some have a bias and others
        none.

    Examples
    --------
    >>> infnet.gp.hyperparameters(infnet.fc("relu", 3, w_std=1.5, b_std=0.1))
    {'w_std': 1.5, 'b_std': 0.1}
    """
    check_chain(net)
    dense = [layer for layer in leaves(net.layers) if isinstance(layer, WEIGHTED)]
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
    """A copy of ``net`` whose Dense layers all have the given ``w_std`` / ``b_std``, and whose
    activation has the given parameters (``activation_parameters``).

    Raises
    ------
    TypeError
        An unknown name, or a network that ``check_chain`` refuses.
    ValueError
        A value that Dense refuses (negative, not finite); ``b_std`` for a network without bias.
    """
    own = hyperparameters(net)
    dense = {k: v for k, v in values.items() if k in NAMES}
    unit = {k: v for k, v in values.items() if k not in NAMES}
    for name in dense:
        if name not in own:
            raise ValueError(f"the network has no bias, so no {name} to set; build it with "
                             "b_std=0.0 to learn one")
    for name in unit:
        check_activation_parameter(net, name)
    act = None
    if unit:
        act = next(layer.act for layer in leaves(net.layers) if isinstance(layer, Nonlinearity))
        act = act.with_params(**{k: float(v) for k, v in unit.items()})
    return Network(*_rebuilt(net.layers, dense, act))


def _rebuilt(layers, dense: dict, act) -> list:
    """The layers with the Dense values ``dense`` and the activation ``act`` (None: kept),
    inside branches too."""
    out = []
    for layer in layers:
        if isinstance(layer, Branches):
            branches = tuple(Network(*_rebuilt(b.layers, dense, act), check=False)
                             for b in layer.branches)
            layer = dataclasses.replace(layer, branches=branches)
        elif isinstance(layer, WEIGHTED):
            layer = dataclasses.replace(layer, **dense)
        elif isinstance(layer, Nonlinearity) and act is not None:
            layer = dataclasses.replace(layer, act=act)
        out.append(layer)
    return out


def activation_parameters(net) -> dict[str, float]:
    """The continuous (real-valued) parameters of the network's activation, which every
    activation layer shares, with their values: the names that ``kernel_gradients`` can
    differentiate beside ``w_std`` and ``b_std``.

    Raises
    ------
    TypeError
        A network that ``check_chain`` refuses.
    ValueError
        Its activation layers are not all the same activation.

    Examples
    --------
    >>> infnet.gp.activation_parameters(infnet.fc("swish", 2))
    {'beta': 1.0}
    """
    check_chain(net)
    acts = [layer.act for layer in leaves(net.layers) if isinstance(layer, Nonlinearity)]
    if not acts:
        return {}
    first = acts[0]
    if any(a is not first and a != first for a in acts[1:]):
        raise ValueError("the activation layers differ: activation parameters are learned when "
                         "every layer has the same activation (infnet.fc)")
    return {k: float(v) for k, v in first.params.items()
            if isinstance(v, float) and not isinstance(v, bool)}


def check_activation_parameter(net, name: str) -> None:
    """Raise unless ``name`` is a differentiable parameter of the network's activation."""
    params = activation_parameters(net)
    if name not in params:
        act = next((layer.act for layer in leaves(net.layers)
                    if isinstance(layer, Nonlinearity)), None)
        have = ", ".join(["w_std", "b_std", *params])
        what = "no activation" if act is None else f"activation {act.name!r}"
        raise TypeError(f"unknown hyperparameter {name!r}: the network ({what}) has {have}")
    act = next(layer.act for layer in leaves(net.layers) if isinstance(layer, Nonlinearity))
    if act.entry is None:
        raise ValueError(f"{act.name!r} is not a catalog activation: its parameters cannot be "
                         "rebuilt; learn w_std and b_std only")
    if act.is_closed_form:
        return
    value = params[name]
    moved = act.with_params(**{name: value + 1e-3 * (1 + abs(value))})
    if moved.kinks != act.kinks:
        raise ValueError(f"{name} moves a kink of {act.name!r} (a unit without a closed form): "
                         "the jump of phi' moves with it and its gradient is not written; "
                         "keep it fixed")


def rows_as_inputs(x, input_shape, name: str = "X"):
    """Rows of a 2-D tensor (n, d), as scikit-learn and GPyTorch hand them over, reshaped to the
    network's inputs (n, *input_shape) (images (n, C, H, W), sequences (n, C, L)); unchanged
    for ``input_shape`` None."""
    if input_shape is None:
        return x
    shape = tuple(int(v) for v in input_shape)
    if math.prod(shape) != x.shape[1]:
        raise ValueError(f"{name} has rows of {x.shape[1]} features, but input_shape {shape} "
                         f"holds {math.prod(shape)}: flatten each input to one row of "
                         "C * H * W values (torch's layout)")
    return x.reshape(x.shape[0], *shape)
