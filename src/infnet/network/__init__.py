"""Networks of layers and their infinite-width kernels.

``layers`` (the layer protocol, Dense, activations, LayerNorm), ``branches`` (residual sums
and parallel branches), ``modules`` (their torch.nn pieces), ``network`` (a serial composition and its
kernels on data, tile by tile), ``runs`` (repeated blocks jumped over at fixed points),
``inputs`` (data checks, angles, the ``Kernel`` value), ``infinite`` (the infinite-depth
network), ``compose`` (``serial``, ``fc``) and ``finite`` (the finite-width ``torch.nn``
counterparts and Monte Carlo kernels).
"""

from .architectures import ARCHITECTURES, architecture, cnn, myrtle, wide_resnet
from .branches import Branches, branch_sum, parallel, residual
from .compose import fc, serial
from .conv import Conv, ConvLocal
from .inputs import Kernel
from .layers import Dense, Layer, Moments, Nonlinearity
from .network import Network
from .normalization import LayerNorm
from .pooling import AvgPool, Flatten, GlobalAvgPool
from .trace import IllConditionedError

__all__ = ["ARCHITECTURES", "AvgPool", "Branches", "Conv", "ConvLocal", "Dense", "Flatten",
           "GlobalAvgPool", "IllConditionedError", "Kernel", "Layer", "LayerNorm", "Moments",
           "Network", "Nonlinearity", "architecture", "branch_sum", "cnn", "fc", "myrtle",
           "parallel", "residual", "serial", "wide_resnet"]
