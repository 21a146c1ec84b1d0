"""Constructors of networks: ``serial`` (compose layers and networks) and ``fc`` (the
fully-connected chain, or its infinite-depth limit)."""

from __future__ import annotations

import math

from ..activations import Activation, activation
from ..core.checks import check_depth
from .infinite import InfiniteDepth
from .layers import Dense
from .network import Network


def serial(*layers) -> Network:
    """Compose layers (Dense, Activation values or catalog names, or Networks) into a Network.

    Parameters
    ----------
    *layers : Layer, Activation, str or Network
        The layers in order; a Network's layers are spliced in, an Activation or a catalog
        name becomes a ``Nonlinearity``.

    Returns
    -------
    Network
        The composition.

    Raises
    ------
    ValueError
        A layer that needs a Gaussian input (an activation, LayerNorm) follows the data or
        another activation (``Network``).
    TypeError
        An argument is not a layer, an Activation, a catalog name or a Network.
    KeyError
        An unknown catalog name.

    Examples
    --------
    >>> block = infnet.serial(infnet.Dense(1.0, 0.1), "tanh")
    >>> net = infnet.serial(block, block, infnet.Dense())
    >>> len(net.layers), [a.name for a in net.activations]
    (5, ['tanh', 'tanh'])
    """
    return Network(*layers)  # (Network flattens the Networks among its layers)


def fc(act, depth: int, *, w_std: float = 1.0, b_std: float | None = 0.0,
       parameterization: str = "ntk", width: int | None = None) -> Network:
    """A fully-connected network: depth x [Dense, act], then a Dense readout.

    ``act`` is an Activation or a catalog name. For the standard parameterization give the
    hidden ``width`` (the NTK grows with it). ``depth=math.inf``: the infinite-depth limit of
    the normalized bias-free network (``network.infinite.InfiniteDepth``); for very deep finite
    networks of that kind, ``infnet.deep_kernels`` costs a number of layers that does not grow
    with depth.

    Parameters
    ----------
    act : Activation or str
        The activation, or a catalog name.
    depth : int or math.inf
        The number of hidden layers, >= 1, or ``math.inf``.
    w_std, b_std : float
        The stds of every Dense layer (``Dense``); ``b_std=None``: no bias. With
        ``depth=math.inf`` w_std does not matter (the activation is normalized) and b_std must
        be 0.
    parameterization : {"ntk", "standard"}
        As in ``Dense``.
    width : int, optional
        The hidden width (the NTK of the standard parameterization grows with it).

    Returns
    -------
    Network
        ``depth`` x [Dense, act] and a Dense readout of width 1; for ``depth=math.inf`` an
        ``InfiniteDepth`` network (with ``kernel`` too, but no finite counterpart).

    Raises
    ------
    ValueError
        depth is not an integer >= 1 or ``math.inf``; ``depth=math.inf`` with a bias; invalid
        Dense arguments (``Dense``).
    KeyError, TypeError
        As ``infnet.activation``: an unknown name, or an argument that is not an activation.

    Examples
    --------
    >>> net = infnet.fc("relu", depth=3)
    >>> len(net.layers), net.layers[-1].width
    (7, 1)
    >>> x = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    >>> net.kernel(x).ntk.shape
    torch.Size([2, 2])
    >>> import math
    >>> print(infnet.fc("erf", depth=math.inf))
    fc(erf, depth=inf)  # singular
    """
    depth = check_depth(depth, infinite=True)
    if depth == math.inf:
        if (b_std or 0.0) != 0.0:
            raise ValueError("the infinite-depth limit is that of the bias-free network on the "
                             "sphere (Radhakrishnan, Belkin & Uhler 2023): use b_std=0")
        return InfiniteDepth(act)  # w_std does not matter: the activation is normalized
    act = activation(act) if not isinstance(act, Activation) else act
    hidden = Dense(w_std, b_std, parameterization, width)
    return Network(*([hidden, act] * depth), Dense(w_std, b_std, parameterization, 1))
