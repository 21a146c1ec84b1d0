"""Convolutional networks (Conv, ConvLocal, AvgPool, GlobalAvgPool, Flatten, residual blocks;
the ``cnn``, ``myrtle`` and ``wide_resnet`` constructors) checked against:

- Monte Carlo: the mean over random initializations of wide finite networks built by
  ``net.finite`` (the NNGP as E[f(x) f(x')], the NTK as the mean empirical NTK), within 5
  standard errors plus an O(1/width) finite-width allowance;
- identities that hold exactly: 1 x 1 images and filters are a fully connected network; a
  VALID filter covering the whole image is a Dense layer on the flattened image; a CIRCULAR
  network with global average pooling is invariant to translations; a locally connected
  network equals the CNN without pooling (and not with it); kernels are symmetric and positive
  semi-definite; tiles of pairs (small ``memory=``) give the entries of the whole kernel;
  Myrtle-5's global pooling is its three 2 x 2 poolings and a flatten on 32 x 32 images;
- clear errors for bad inputs and invalid networks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import infnet
from infnet import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, serial
from infnet.network import ConvLocal, residual
from infnet.network.finite import monte_carlo_kernel

F64 = torch.float64


def images(n, c, *shape, seed=0):
    return torch.randn(n, c, *shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def close(a, b, rtol=1e-12):
    """Entrywise |a - b| <= rtol * the largest |b| (the kernels' scale)."""
    scale = float(b.abs().max())
    assert scale > 0
    err = float((a - b).abs().max())
    assert err <= rtol * scale, f"max error {err:.3g} at scale {scale:.3g}"


def assert_kernels_close(k, ref, rtol=1e-12):
    close(k.nngp, ref.nngp, rtol)
    close(k.ntk, ref.ntk, rtol)


# ---- Monte Carlo over wide finite networks ---------------------------------------------------------


def varied(n, c, *shape, seed):
    """Images of different norms (scales 0.5 to 1.7): kernels with entries of several sizes."""
    return images(n, c, *shape, seed=seed) * torch.linspace(0.5, 1.7, n, dtype=F64).reshape(
        -1, *[1] * (len(shape) + 1))


def assert_monte_carlo(net, x, *, width, n_samples, seed, wrong=None):
    """Every entry of the NNGP (the mean of 1024 readouts per draw) and of the NTK (one
    readout) within 5 standard errors plus 3 / width of the diagonal's scale of net.kernel(x).
    The tolerance is a real test: below a fifth of the kernels' scale, and where ``wrong`` (a
    network whose kernel a plausible mistake would give) is given, its kernel is refused."""
    k = net.kernel(x)
    nngp = monte_carlo_kernel(net, x, width=width, n_samples=n_samples, seed=seed, get="nngp",
                              outputs=1024)
    ntk = monte_carlo_kernel(net, x, width=width, n_samples=n_samples, seed=seed + 1, get="ntk")
    refused = []
    kw = None if wrong is None else wrong.kernel(x)
    for name, got, se in (("nngp", nngp.nngp, nngp.nngp_se), ("ntk", ntk.ntk, ntk.ntk_se)):
        want = getattr(k, name)
        scale = float(want.diagonal().max())
        tol = 5 * se + 3.0 / width * scale
        assert float(tol.max()) < scale / 5, (name, float(tol.max()), scale)
        assert bool(((got - want).abs() <= tol).all()), (name, ((got - want) / se))
        if kw is not None:
            refused.append(bool(((got - getattr(kw, name)).abs() > tol).any()))
    if kw is not None:
        assert all(refused), refused


MC = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")


@MC
def test_cnn_vec_by_monte_carlo():
    """Two SAME convolutions (relu, erf, biases) and a Flatten readout (CNN-VEC); the
    CIRCULAR padding's kernel (a border mistake) is refused."""
    def net(padding):
        return serial(Conv((3, 3), 1.5, 0.2, padding=padding), "relu",
                      Conv((2, 2), 1.3, 0.1, padding=padding), "erf", Flatten(), Dense(1.0, 0.1))

    assert_monte_carlo(net("SAME"), varied(3, 2, 5, 5, seed=1), width=256, n_samples=20, seed=0,
                       wrong=net("CIRCULAR"))


@MC
def test_cnn_gap_with_pooling_and_a_stride_by_monte_carlo():
    """An overlapping AvgPool (stride 1), a convolution at stride 2, global average pooling;
    the Flatten readout's kernel (pooling without the covariances of distinct positions) is
    refused."""
    def net(readout):
        return serial(Conv((3, 3), 1.4, 0.1), "relu", AvgPool((2, 2), strides=(1, 1)),
                      Conv((3, 3), 1.2, 0.2, strides=(2, 2)), "relu", readout, Dense(1.0, 0.1))

    assert_monte_carlo(net(GlobalAvgPool()), varied(3, 2, 6, 6, seed=2), width=256, n_samples=20,
                       seed=10, wrong=net(Flatten()))


@pytest.mark.slow
@MC
def test_locally_connected_network_by_monte_carlo():
    """ConvLocal (unshared weights and biases), SAME then VALID, with global average pooling,
    where the LCN's kernel differs from the CNN's: the CNN's is refused."""
    def net(layer):
        return serial(layer((3, 3), 1.4, 0.2), "relu", layer((2, 2), 1.2, 0.1, padding="VALID"),
                      "relu", GlobalAvgPool(), Dense(1.0, 0.1))

    assert_monte_carlo(net(ConvLocal), varied(3, 2, 4, 4, seed=3), width=128, n_samples=20,
                       seed=20, wrong=net(Conv))


@MC
def test_one_dimensional_conv_net_by_monte_carlo():
    """Sequences (n, C, L): a SAME erf layer, a VALID stride-2 layer, global average pooling;
    the kernel at stride 1 is refused."""
    def net(stride):
        return serial(Conv((3,), 1.4, 0.1), "erf",
                      Conv((2,), 1.2, 0.1, strides=(stride,), padding="VALID"), "relu",
                      GlobalAvgPool(), Dense(1.0, 0.1))

    assert_monte_carlo(net(2), varied(4, 2, 7, seed=4), width=512, n_samples=20, seed=30,
                       wrong=net(1))


@MC
def test_residual_conv_block_by_monte_carlo():
    """A residual block [relu, Conv] + skip with branch weight 0.8, then a SAME 2 x 2 pooling
    (a padded window) and Flatten; the kernel without the skip is refused."""
    def net(skip):
        return serial(Conv((3, 3), 1.0, 0.1),
                      residual("relu", Conv((2, 2), 1.2, 0.1), branch_weight=0.8, skip_weight=skip),
                      "relu", AvgPool((2, 2), padding="SAME"), Flatten(), Dense(1.0, 0.0))

    assert_monte_carlo(net(1.0), varied(3, 2, 5, 5, seed=5), width=256, n_samples=20, seed=40,
                       wrong=net(0.0))


# ---- identities ------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_one_by_one_images_and_filters_are_a_fully_connected_network(act):
    w, b = 1.3, 0.4
    x = images(4, 5, 1, 1, seed=6)
    net = serial(Conv((1, 1), w, b), act, Conv((1, 1), w, b), act, Flatten(), Dense(w, b))
    ref = infnet.fc(act, 2, w_std=w, b_std=b).kernel(x.reshape(4, 5))
    assert_kernels_close(net.kernel(x), ref)


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_valid_filter_over_the_whole_image_is_a_dense_layer(act):
    w, b = 1.2, 0.3
    x = images(4, 2, 3, 4, seed=7)
    net = serial(Conv((3, 4), w, b, padding="VALID"), act, Flatten(), Dense(w, b))
    ref = infnet.fc(act, 1, w_std=w, b_std=b).kernel(x.reshape(4, -1))
    assert_kernels_close(net.kernel(x), ref)


def test_circular_network_with_global_pooling_is_translation_invariant():
    net = serial(Conv((3, 3), 1.4, 0.2, padding="CIRCULAR"), "relu",
                 Conv((2, 3), 1.2, 0.1, padding="CIRCULAR"), "erf", GlobalAvgPool(), Dense(1.0, 0.1))
    x, y = images(3, 2, 5, 6, seed=8), images(2, 2, 5, 6, seed=9)
    k, kxy = net.kernel(x), net.kernel(x, y)
    assert_kernels_close(net.kernel(torch.roll(x, (2, -1), dims=(2, 3))), k)
    # each side by its own shift, and each input by its own
    assert_kernels_close(net.kernel(torch.roll(x, (1, 3), dims=(2, 3)), torch.roll(y, 4, dims=3)), kxy)
    rolled = torch.stack([torch.roll(xi, (i, 2 * i), dims=(1, 2)) for i, xi in enumerate(x)])
    assert_kernels_close(net.kernel(rolled), k)
    # not trivially: a SAME network (zero padding) does see the shift
    same = serial(Conv((3, 3), 1.4, 0.2), "relu", GlobalAvgPool(), Dense(1.0, 0.1))
    shifted = same.kernel(torch.roll(x, (2, -1), dims=(2, 3)), x)
    assert float((shifted.nngp - same.kernel(x).nngp).abs().max()) > 1e-3


@pytest.mark.parametrize("padding", ["SAME", "VALID", "CIRCULAR"])
def test_lcn_equals_cnn_without_pooling_and_not_with_it(padding):
    x = images(4, 2, 5, 5, seed=10)

    def net(layer, readout):
        return serial(layer((3, 3), 1.4, 0.1, padding=padding), "relu",
                      layer((2, 2), 1.2, 0.2, padding=padding), "erf", readout, Dense(1.0, 0.1))

    assert_kernels_close(net(ConvLocal, Flatten()).kernel(x), net(Conv, Flatten()).kernel(x))
    lcn, cnn = net(ConvLocal, GlobalAvgPool()).kernel(x), net(Conv, GlobalAvgPool()).kernel(x)
    for a, b in ((lcn.nngp, cnn.nngp), (lcn.ntk, cnn.ntk)):
        off = ~torch.eye(4, dtype=torch.bool)
        assert float(((a - b)[off]).abs().max()) > 1e-3 * float(b.abs().max())
    # the constructor's local=True is the same network
    assert_kernels_close(infnet.network.cnn("relu", 2, readout="flatten", local=True).kernel(x),
                         infnet.network.cnn("relu", 2, readout="flatten").kernel(x))


NETWORKS = {
    "cnn-gap": (lambda: infnet.network.cnn("relu", 3, b_std=0.1), (2, 5, 5)),
    "cnn-vec-erf": (lambda: infnet.network.cnn("erf", 2, readout="flatten", b_std=0.2), (3, 6, 5)),
    "cnn-1d": (lambda: infnet.network.cnn("relu", 2, filter_shape=(3,)), (2, 9)),
    "lcn-gap": (lambda: infnet.network.cnn("relu", 2, local=True), (2, 5, 5)),
    "myrtle5": (lambda: infnet.network.myrtle(5), (3, 8, 8)),
    "wide_resnet1": (lambda: infnet.network.wide_resnet(1), (3, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_kernels_are_symmetric_and_positive_semidefinite(name):
    make, shape = NETWORKS[name]
    net = make()
    x, y = images(3, *shape, seed=11), images(2, *shape, seed=12)
    k = net.kernel(x)
    for m in (k.nngp, k.ntk):
        assert m.shape == (3, 3) and m.dtype == F64
        close(m, m.T)  # (to rounding: a tile of pairs computes both triangles)
        ev = torch.linalg.eigvalsh(m)
        assert float(ev[0]) >= -1e-12 * float(ev[-1]) and float(ev[-1]) > 0
    kxy, kyx = net.kernel(x, y), net.kernel(y, x)
    close(kxy.nngp, kyx.nngp.T)
    close(kxy.ntk, kyx.ntk.T)
    # the joint kernel of x and y is PSD too, and has these blocks
    both = net.kernel(torch.cat([x, y]))
    assert_kernels_close(infnet.Kernel(both.nngp[:3, 3:], both.ntk[:3, 3:]), kxy)
    for m in (both.nngp, both.ntk):
        ev = torch.linalg.eigvalsh(m)
        assert float(ev[0]) >= -1e-12 * float(ev[-1])


def pair_bytes(net, shape):
    """The work memory of one pair of inputs: ``peak_memory`` of a 1 x 1 NNGP (8 bytes of
    output and one pair's work)."""
    return net.peak_memory(shape, 1, get="nngp") - 8


@pytest.mark.parametrize("readout", [Flatten, GlobalAvgPool])
def test_tiles_of_pairs_give_the_blocks_of_the_kernel(readout):
    """memory= small enough for a few pairs per tile: the same entries as one tile, and the
    blocks of kernel(x) are kernel(x[:a], x[a:])."""
    net = serial(Conv((3, 3), 1.4, 0.1), "relu", AvgPool((2, 2), strides=(1, 1), padding="SAME"),
                 Conv((3, 3), 1.2, 0.0), "erf", readout(), Dense(1.0, 0.1))
    x = images(7, 2, 5, 5, seed=13)
    per_pair = pair_bytes(net, (5, 5))
    memory = 3 * per_pair  # one tile holds 3 pairs (1 x 1 tiles of pairs, chunks of 3 inputs)
    k = net.kernel(x)
    tiled = net.kernel(x, memory=memory)
    assert_kernels_close(tiled, k, rtol=1e-13)
    close(tiled.nngp, tiled.nngp.T)
    a = 3
    off = net.kernel(x[:a], x[a:], memory=memory)
    assert_kernels_close(off, infnet.Kernel(k.nngp[:a, a:], k.ntk[:a, a:]), rtol=1e-13)
    # and the block size of the fully connected tiles too
    assert_kernels_close(net.kernel(x, block=2), k, rtol=1e-13)


def test_myrtle5_global_pooling_is_three_poolings_and_a_flatten_on_32x32():
    x = images(2, 3, 32, 32, seed=14)
    w = 2**0.5
    conv, pool = Conv((3, 3), w, 0.0), AvgPool((2, 2))
    explicit = serial(conv, "relu", conv, "relu", pool, conv, "relu", pool, conv, "relu",
                      pool, pool, pool, Flatten(), Dense(w, 0.0))
    assert_kernels_close(infnet.network.myrtle(5).kernel(x), explicit.kernel(x))


# ---- bad inputs ------------------------------------------------------------------------------------


def small_net(readout=Flatten):
    return serial(Conv((3, 3)), "relu", readout(), Dense())


@pytest.mark.parametrize("shape", [(3, 2, 4), (3, 8), (3, 2, 4, 4, 1)])
def test_images_of_the_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"this network takes inputs \(n, C, H, W\)"):
        small_net().kernel(torch.ones(shape, dtype=F64))
    one_d = serial(Conv((3,)), "relu", Flatten(), Dense())
    with pytest.raises(ValueError, match=r"takes inputs \(n, C, L\)"):
        one_d.kernel(torch.ones(3, 2, 4, 4, dtype=F64))


@pytest.mark.parametrize("other", [(2, 3, 4, 4), (2, 2, 5, 4), (2, 2, 4, 5)])
def test_x1_and_x2_of_different_channels_or_sizes(other):
    with pytest.raises(ValueError, match="channels and sizes must match"):
        small_net().kernel(torch.ones(3, 2, 4, 4, dtype=F64), torch.ones(other, dtype=F64))


def test_layers_that_do_not_fit_the_image():
    x = images(2, 2, 4, 4)
    with pytest.raises(ValueError, match="filter of size 5 does not fit in an input of size 4"):
        serial(Conv((5, 3), padding="VALID"), "relu", Flatten(), Dense()).kernel(x)
    with pytest.raises(ValueError, match="pooling window of size 5 does not fit"):
        serial(Conv((3, 3)), "relu", AvgPool((5, 5)), Flatten(), Dense()).kernel(x)
    # a VALID chain that runs out of positions only at its second layer
    with pytest.raises(ValueError, match="filter of size 3 does not fit in an input of size 2"):
        serial(Conv((3, 3), padding="VALID"), "relu", Conv((3, 3), padding="VALID"), "relu",
               Flatten(), Dense()).kernel(x)


@pytest.mark.parametrize("make, match", [
    (lambda: Conv((3, 3), strides=(0, 1)), "strides must be 1 or 2 positive integers"),
    (lambda: Conv((0, 3)), "filter_shape must be 1 or 2 positive integers"),
    (lambda: Conv((3, 3), strides=(1,)), r"strides \(1,\) has 1 dimensions but the filter has 2"),
    (lambda: Conv((3, 3), padding="same"), "padding must be one of"),
    (lambda: AvgPool((2, 0)), "window_shape must be 1 or 2 positive integers"),
    (lambda: AvgPool((2, 2), strides=(0, 2)), "strides must be 1 or 2 positive integers"),
    (lambda: infnet.network.cnn("relu", 2, readout="max"), "readout must be one of"),
    (lambda: infnet.network.myrtle(6), "depth 5, 7 or 10"),
])
def test_invalid_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layers, match", [
    ((Conv((3, 3)), "relu", Flatten(), Conv((3, 3)), Dense()), "the spatial positions are gone"),
    ((Conv((3, 3)), "relu", GlobalAvgPool(), AvgPool((2, 2)), Dense()),
     "the spatial positions are gone"),
    ((Conv((3, 3)), "relu", "relu", Flatten(), Dense()), "not a Gaussian pre-activation"),
    (("relu", Conv((3, 3)), "relu", Flatten(), Dense()), "follows the input data"),
    ((Conv((3, 3)), "relu", Dense(), Flatten(), Dense()), "a Dense layer reads flat features"),
    ((Conv((3, 3)), "relu", Dense()), "ends its spatial part with Flatten"),
    ((Conv((3, 3)), "relu", Conv((3, 3))), "ends its spatial part with Flatten"),
    ((Conv((3,)), "relu", Conv((3, 3)), Flatten(), Dense()), "mixes 1-D and 2-D"),
    ((Conv((3, 3)), residual("relu", Conv((3, 3)), GlobalAvgPool()), Flatten(), Dense()),
     "inside a branch"),
])
def test_invalid_networks_are_refused_at_construction(layers, match):
    with pytest.raises(ValueError, match=match):
        serial(*layers)


def test_nan_or_inf_in_images():
    x = images(3, 2, 4, 4)
    bad = x.clone()
    bad[2, 1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x1 contains NaN or inf \(first in input 2\)"):
        small_net().kernel(bad)
    bad[2, 1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x2 contains NaN or inf \(first in input 2\)"):
        small_net(GlobalAvgPool).kernel(x, bad)


@pytest.mark.parametrize("readout, layout", [
    (Flatten, "diagonal"),
    # (the full layout goes in bands of rows, but a 4 x 4 image is within one band's reach)
    (GlobalAvgPool, "full layout .* even in bands of one row")])
def test_memory_too_small_for_one_pair(readout, layout):
    net = small_net(readout)
    per_pair = pair_bytes(net, (4, 4))
    assert net.peak_memory((4, 4), 3, memory=per_pair) == 2 * 9 * 8 + per_pair
    x = images(3, 2, 4, 4)
    with pytest.raises(MemoryError, match=f"one pair of inputs of spatial shape .* {layout}"):
        net.kernel(x, memory=per_pair - 1)
    assert net.kernel(x, memory=per_pair).nngp.shape == (3, 3)  # one pair per tile is enough


def test_bands_of_rows_within_the_memory_budget():
    """Below one pair's work, the full layout goes in bands of rows (``network.banded``): the
    peak memory said is the outputs plus one band's work, within the budget, the bands are
    the most input rows that fit (halving), and the kernel is the one computed whole."""
    from infnet.network import banded

    net = small_net(GlobalAvgPool)
    shape = (16, 4)
    plan = net._spatial_plan()
    per_pair = pair_bytes(net, shape)
    halo = banded.reach(plan.head, shape)
    assert halo == (1, 1)  # one 3 x 3 convolution, SAME: one row before and one after
    for memory in (per_pair - 1, per_pair // 2):
        rows, got_halo = banded.band_rows(plan, shape, memory)
        work = banded.band_bytes(plan, shape, rows, halo)
        assert got_halo == halo and work <= memory
        assert rows == shape[0] or banded.band_bytes(plan, shape, 2 * rows, halo) > memory
        assert net.peak_memory(shape, 3, memory=memory) == 2 * 9 * 8 + work
        x = images(3, 2, *shape, seed=5)
        assert_kernels_close(net.kernel(x, memory=memory), net.kernel(x), rtol=1e-13)


# ---- everything above the kernel takes spatial networks unchanged ---------------------------------

def test_store_and_operator_take_images(tmp_path):
    """A tiled store (tiles of image pairs) and the matrix-free operator equal net.kernel."""
    x = torch.randn(10, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    net = infnet.network.cnn("relu", 2, readout="gap")
    ref = net.kernel(x).ntk
    store = infnet.scale.compute_kernel(net, x, path=tmp_path / "K", tile=4, progress=False)
    assert store.verify().complete
    assert torch.allclose(store.to_array(), ref, rtol=1e-13, atol=1e-15)
    op = infnet.scale.NetworkOperator(net, x, tile=4)
    v = torch.randn(10, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(op.matvec(v), ref @ v, rtol=1e-12, atol=1e-13)
    assert torch.allclose(op.diagonal(), ref.diagonal(), rtol=1e-13, atol=0)


def test_estimator_with_architecture_matches_kernel_regression():
    """NTKRegressor(architecture=..., input_shape=...) on flat rows is kernel regression with
    the convolutional network's NTK on the images."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(12, 1, 5, 5, dtype=torch.float64, generator=gen)
    y = torch.randn(12, dtype=torch.float64, generator=gen)
    flat = x.reshape(12, -1).numpy()
    reg = infnet.NTKRegressor("relu", 2, architecture="cnn-gap", input_shape=(1, 5, 5))
    reg.fit(flat[:8], y[:8].numpy())
    net = infnet.network.cnn("relu", 2, readout="gap")
    k = net.kernel(x[:8]).ntk
    expected = net.kernel(x[8:], x[:8]).ntk @ torch.linalg.solve(k, y[:8])
    assert np.allclose(reg.predict(flat[8:]), expected.numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="input_shape"):
        infnet.NTKRegressor("relu", 2, architecture="cnn-gap").fit(flat[:8], y[:8].numpy())
    with pytest.raises(ValueError, match="holds 24"):
        infnet.NTKRegressor("relu", 2, architecture="cnn-gap",
                            input_shape=(1, 4, 6)).fit(flat[:8], y[:8].numpy())


def test_cli_predict_architecture(tmp_path):
    """infnet predict digits --architecture cnn-vec: a CSV row with the architecture."""
    from infnet.cli.main import main

    out = tmp_path / "p.csv"
    assert main(["predict", "digits", "--architecture", "cnn-vec", "-L", "1", "--n-train", "60",
                 "--n-test", "40", "-o", str(out)]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    assert rows[0]["architecture"] == "cnn-vec" and rows[0]["activation"] == "relu"
    assert float(rows[0]["accuracy"]) > 0.5  # ten classes: chance is 0.1


def test_unchecked_maps_equal_the_checked_ones_for_every_closed_form():
    """Spatial passes call the closed forms without the argument checks
    (``Activation.kernel(check=False)``): for every catalog activation with a closed form the
    values, broadcast to the tile, equal those of the checked call."""
    from infnet.network.layers import Moments, Nonlinearity

    gen = torch.Generator().manual_seed(9)
    q1 = torch.rand(3, 1, 4, 1, dtype=torch.float64, generator=gen) + 0.5
    q2 = torch.rand(1, 2, 1, 4, dtype=torch.float64, generator=gen) + 0.5
    rho = 2 * torch.rand(3, 2, 4, 4, dtype=torch.float64, generator=gen) - 1
    c = 0.9 * rho * (q1 * q2).sqrt()
    ntk = torch.rand(3, 2, 4, 4, dtype=torch.float64, generator=gen)
    checked = 0
    for name in infnet.list_activations():
        act = infnet.activation(name)
        if not act.is_closed_form or act.jumps:
            continue
        out = Nonlinearity(act).covariance_map(Moments(c, ntk, q1, q2, 3))
        K, Kdot = act.kernel(q1, q2, c)
        assert out.nngp.shape == c.shape, name
        assert torch.allclose(out.nngp, K, rtol=1e-14, atol=1e-300), name
        assert torch.allclose(out.ntk, Kdot * ntk, rtol=1e-14, atol=1e-300), name
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("channels", [1, 3, 20])
def test_same_position_covariances_of_the_data(channels):
    """The diagonal layout's data covariances (channel sums one by one for up to 16 channels,
    a batched product beyond): against a direct sum over channels, and two copies of an input
    equal to its own variances bit for bit where the channels are summed one by one."""
    from infnet.network.data_covariance import SUMMED_CHANNELS, pair_covariance, self_covariance

    g = torch.Generator().manual_seed(channels)
    x = torch.randn(4, channels, 5, 6, generator=g, dtype=torch.float64)
    x[2] = x[0]
    pairs = pair_covariance(x, x, False)
    want = (x[:, None] * x[None, :]).sum(2) / channels
    assert pairs.shape == (4, 4, 5, 6)
    assert float((pairs - want).abs().max()) <= 1e-14 * float(want.abs().max())
    own = self_covariance(x, False)
    assert float((own - want.diagonal(dim1=0, dim2=1).permute(2, 0, 1)).abs().max()) <= 1e-14 * float(
        own.abs().max())
    if channels <= SUMMED_CHANNELS:
        assert torch.equal(pairs[0, 2], own[0]) and torch.equal(pairs[0, 0], own[0])
