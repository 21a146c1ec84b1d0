"""The convolutional architectures of the infinite-width literature, as constructors.

- ``cnn``: depth x [Conv, act], then Flatten (CNN-VEC) or GlobalAvgPool (CNN-GAP) and a Dense
  readout; ``local=True`` gives the locally connected network (LCN) of the same shape
  (Novak et al. 2019, arXiv 1810.05148; Arora et al. 2019, arXiv 1904.11955; Lee et al. 2020,
  arXiv 2007.15801).
- ``myrtle``: the Myrtle-5, 7 and 10 networks of Shankar et al. 2020 (arXiv 2003.02237):
  3 x 3 SAME convolutions with ReLU in three stages of (2, 1, 1), (2, 2, 2) or (3, 3, 3) layers,
  2 x 2 average pooling after the first two stages, global average pooling after the third
  (three 2 x 2 poolings and a flatten on 32 x 32 images, the same map), a Dense readout.
- ``wide_resnet``: a wide residual network (Zagoruyko & Komodakis 2016) as in neural-tangents'
  example: a Conv, three groups of ``block_size`` residual blocks [act, Conv, act, Conv] + skip
  (the first block of a group with a Conv on the skip, the second and third groups at stride 2),
  global average pooling and a Dense readout.
Each returns a ``Network``: its kernel, ``finite`` counterpart and everything above them work
unchanged.
"""

from __future__ import annotations

from ..core.checks import check_depth
from .branches import branch_sum
from .compose import fc
from .conv import Conv, ConvLocal
from .layers import Dense
from .network import Network
from .pooling import AvgPool, Flatten, GlobalAvgPool

MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}
READOUTS = ("flatten", "gap")


def cnn(act, depth: int, *, readout: str = "gap", filter_shape=(3, 3), w_std: float = 2**0.5,
        b_std: float | None = 0.0, padding: str = "SAME", local: bool = False) -> Network:
    """A convolutional network: depth x [Conv, act], then Flatten or GlobalAvgPool and a Dense.

    Parameters
    ----------
    act : Activation or str
        The activation, or a catalog name.
    depth : int
        The number of convolutional layers, >= 1.
    readout : {"gap", "flatten"}
        "gap": global average pooling (CNN-GAP); "flatten": the vectorized readout (CNN-VEC).
    filter_shape : tuple of int
        (kh, kw) for images, (k,) for sequences.
    w_std, b_std : float
        The stds of every layer (``Conv``, ``Dense``).
    padding : {"SAME", "VALID", "CIRCULAR"}
        As in ``Conv``.
    local : bool
        Unshared weights (``ConvLocal``): the locally connected network.

    Returns
    -------
    Network
        The network.

    Raises
    ------
    ValueError
        An invalid depth or readout, or invalid layer arguments.

    Examples
    --------
    >>> net = infnet.network.cnn("relu", depth=2, readout="flatten")
    >>> [type(layer).__name__ for layer in net.layers]
    ['Conv', 'Nonlinearity', 'Conv', 'Nonlinearity', 'Flatten', 'Dense']
    >>> net.kernel(torch.ones(2, 1, 5, 5, dtype=torch.float64)).nngp.shape
    torch.Size([2, 2])
    """
    depth = check_depth(depth)
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    layer = ConvLocal if local else Conv
    conv = layer(filter_shape, w_std, b_std, padding=padding)
    pool = GlobalAvgPool() if readout == "gap" else Flatten()
    return Network(*([conv, act] * depth), pool, Dense(w_std, b_std, width=1))


def myrtle(depth: int = 5, act="relu", *, w_std: float = 2**0.5, b_std: float | None = 0.0
           ) -> Network:
    """The Myrtle network of Shankar et al. 2020 (module docstring).

    Parameters
    ----------
    depth : {5, 7, 10}
        The number of layers with weights.
    act : Activation or str
        The activation (ReLU in the paper).
    w_std, b_std : float
        The stds of every layer (sqrt(2) and 0 in the paper).

    Returns
    -------
    Network
        The network, for images (n, C, H, W) with H, W >= 4.

    Raises
    ------
    ValueError
        A depth other than 5, 7 or 10.

    Examples
    --------
    >>> net = infnet.network.myrtle(5)
    >>> sum(type(layer).__name__ == "Conv" for layer in net.layers)
    4
    """
    if depth not in MYRTLE_STAGES:
        raise ValueError(f"Myrtle networks have depth 5, 7 or 10, got {depth!r}")
    conv = Conv((3, 3), w_std, b_std, padding="SAME")
    pool = AvgPool((2, 2), strides=(2, 2))
    a, b, c = MYRTLE_STAGES[depth]
    return Network(*([conv, act] * a), pool, *([conv, act] * b), pool, *([conv, act] * c),
                   GlobalAvgPool(), Dense(w_std, b_std, width=1))


def wide_resnet(block_size: int = 1, act="relu", *, w_std: float = 1.0, b_std: float | None = 0.0
                ) -> Network:
    """A wide residual network (module docstring); the widening factor is infinite.

    Parameters
    ----------
    block_size : int
        Residual blocks per group, >= 1 (depth 6 block_size + 4 in the paper's count).
    act : Activation or str
        The activation.
    w_std, b_std : float
        The stds of every layer.

    Returns
    -------
    Network
        The network, for images (n, C, H, W).

    Raises
    ------
    ValueError
        An invalid block size or layer arguments.

    Examples
    --------
    >>> net = infnet.network.wide_resnet(1)
    >>> net.kernel(torch.ones(2, 3, 8, 8, dtype=torch.float64)).ntk.shape
    torch.Size([2, 2])
    """
    block_size = check_depth(block_size)
    layers = [Conv((3, 3), w_std, b_std, padding="SAME")]
    for stride in (1, 2, 2):
        for i in range(block_size):
            s = (stride, stride) if i == 0 else (1, 1)
            conv = Conv((3, 3), w_std, b_std, strides=s, padding="SAME")
            main = [act, conv, act, Conv((3, 3), w_std, b_std, padding="SAME")]
            skip = [conv] if i == 0 else []  # the first block of a group: a Conv skip
            layers.append(branch_sum(main, skip))
    return Network(*layers, GlobalAvgPool(), Dense(w_std, b_std, width=1))



#: the architectures by name (``architecture``): the estimators' and the command line's choice
ARCHITECTURES = ("fc", "cnn-vec", "cnn-gap", "lcn-vec", "lcn-gap", "myrtle", "wrn")


def architecture(name: str, act, depth: int, *, w_std: float = 2**0.5,
                 b_std: float | None = 0.0) -> Network:
    """A network by architecture name, activation and depth.

    Parameters
    ----------
    name : {"fc", "cnn-vec", "cnn-gap", "lcn-vec", "lcn-gap", "myrtle", "wrn"}
        "fc": ``fc(act, depth)``; "cnn-*"/"lcn-*": ``cnn`` with a Flatten ("vec") or global
        average pooling ("gap") readout, shared or unshared ("lcn") weights; "myrtle":
        ``myrtle(depth)`` (depth 5, 7 or 10); "wrn": ``wide_resnet(depth)`` (blocks per group).
    act : Activation or str
        The activation.
    depth : int
        As above.
    w_std, b_std : float
        The stds of every layer.

    Returns
    -------
    Network
        The network.

    Raises
    ------
    ValueError
        An unknown name, or arguments the architecture refuses.

    Examples
    --------
    >>> net = infnet.network.architecture("cnn-vec", "relu", 2)
    >>> type(net.layers[-2]).__name__
    'Flatten'
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {ARCHITECTURES}")
    if name == "fc":
        return fc(act, depth, w_std=w_std, b_std=b_std)
    if name == "myrtle":
        return myrtle(depth, act, w_std=w_std, b_std=b_std)
    if name == "wrn":
        return wide_resnet(depth, act, w_std=w_std, b_std=b_std)
    return cnn(act, depth, readout="gap" if name.endswith("gap") else "flatten", w_std=w_std,
               b_std=b_std, local=name.startswith("lcn"))
