"""infnet.gp on convolutional networks: exact derivatives of CNN-GP / CNTK kernels with respect
to the shared w_std, b_std (convolutions and readout) and the activation's parameters, against
finite differences of the kernel itself, and a 1 x 1 image against the fully-connected path."""

import pytest
import torch
from test_gp_gradients import assert_close, five_point

import infnet
from infnet.gp import diagonal_gradients, hyperparameters, kernel_gradients, with_hyperparameters

N = infnet.network
STDS = {"w_std": 1.2, "b_std": 0.3}


def images(n, size=4, channels=2, seed=0):
    x = torch.randn(n, channels, size, size, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    return x


def networks():
    d = STDS
    return {
        "relu CNN-GAP": N.cnn("relu", 2, readout="gap", **d),
        "erf CNN-VEC": N.cnn("erf", 2, readout="flatten", **d),
        "relu LCN-GAP": N.cnn("relu", 2, readout="gap", local=True, **d),
        "swish CNN-GAP (series)": N.cnn("swish", 1, readout="gap", **d),
        "Myrtle-5": N.myrtle(5, **d),
        "standard parameterization, pooling": infnet.serial(
            N.Conv((3, 3), **d, parameterization="standard", width=3), "relu", N.AvgPool((2, 2)),
            N.Conv((3, 3), **d, parameterization="standard", width=4), "erf", N.GlobalAvgPool(),
            infnet.Dense(**d, parameterization="standard")),
        "residual block, fully-connected tail": infnet.serial(
            N.Conv((3, 3), **d), N.residual("relu", N.Conv((3, 3), **d)), "relu",
            N.AvgPool((2, 2), padding="SAME"), N.GlobalAvgPool(), infnet.Dense(**d), "relu",
            infnet.Dense(**d)),
        "ELU (quadrature) CNN-VEC": infnet.serial(N.Conv((3, 3), **d), "elu", N.Flatten(),
                                                  infnet.Dense(**d)),
    }


@pytest.mark.parametrize("label", list(networks()))
def test_gradients_match_finite_differences(label):
    """A duplicated image (pairs of positions exactly at rho = 1 off the self pass) and an image
    with a blank corner (identical zero windows: rho = 1 between distinct positions)."""
    net = networks()[label]
    assert hyperparameters(net) == STDS
    x = images(3)
    x[2] = x[0]
    x[1, :, :2, :2] = 0.0
    k, grads = kernel_gradients(net, x)
    assert torch.equal(k.nngp, net.kernel(x).nngp)
    for name in STDS:
        assert_close(grads, name, five_point(net, name, x), rtol=1e-8)
        assert torch.equal(grads[name].ntk, grads[name].ntk.T)
    x2 = images(2, seed=1)
    x2[1] = x[1]
    _, cross = kernel_gradients(net, x, x2)
    for name in STDS:
        assert_close(cross, name, five_point(net, name, x, x2), rtol=1e-8)
    diag, dgrads = diagonal_gradients(net, x)
    for name in STDS:
        assert torch.allclose(dgrads[name].nngp, grads[name].nngp.diagonal(), rtol=1e-13, atol=0)


def test_one_dimensional_and_circular():
    d = STDS
    net = infnet.serial(N.Conv((3,), **d), "gelu", N.Conv((3,), **d, padding="CIRCULAR"), "relu",
                        N.GlobalAvgPool(), infnet.Dense(**d))
    x = images(3, size=7)[..., 0]
    _, grads = kernel_gradients(net, x)
    for name in STDS:
        assert_close(grads, name, five_point(net, name, x), rtol=1e-8)


def test_activation_parameter_of_a_convolutional_network():
    net = N.cnn("swish", 1, readout="gap", **STDS)
    x = images(3)
    _, grads = kernel_gradients(net, x, wrt=["beta"])
    h = 1e-4
    k = {s: with_hyperparameters(net, beta=1.0 + s * h).kernel(x) for s in (-2, -1, 1, 2)}
    for f in ("nngp", "ntk"):
        ref = (8 * (getattr(k[1], f) - getattr(k[-1], f))
               - (getattr(k[2], f) - getattr(k[-2], f))) / (12 * h)
        got = getattr(grads["beta"], f)
        assert float((got - ref).abs().max() / ref.abs().max()) < 1e-8


def test_a_single_pixel_is_the_fully_connected_network():
    """1 x 1 images with 1 x 1 filters: Conv is Dense on the channels, so the derivatives equal
    those of the fully-connected network on the channel vectors (two independent paths)."""
    depth = 3
    conv = infnet.serial(*[layer for _ in range(depth) for layer in (N.Conv((1, 1), **STDS),
                                                                   "tanh")],
                         N.Flatten(), infnet.Dense(**STDS))
    fc = infnet.fc("tanh", depth, **STDS)
    x = images(4, size=1, channels=3, seed=2)
    _, g_conv = kernel_gradients(conv, x)
    _, g_fc = kernel_gradients(fc, x[:, :, 0, 0])
    for name in STDS:
        for f in ("nngp", "ntk"):
            want = getattr(g_fc[name], f)
            assert torch.allclose(getattr(g_conv[name], f), want, rtol=1e-11,
                                  atol=1e-13 * float(want.abs().max()))


def test_networks_whose_layers_disagree_are_refused():
    mixed = infnet.serial(N.Conv((3, 3), w_std=1.0), "relu", N.GlobalAvgPool(),
                          infnet.Dense(w_std=2.0))
    with pytest.raises(ValueError, match="different w_std"):
        kernel_gradients(mixed, images(2))
    learned = with_hyperparameters(N.cnn("relu", 2, **STDS), w_std=1.7)
    assert hyperparameters(learned) == {"w_std": 1.7, "b_std": 0.3}


def test_tiles_and_chunks_change_nothing(monkeypatch):
    """Tiles of one pair and self passes of two images give the derivatives of one tile."""
    from infnet.gp import gradients

    net = N.myrtle(5, **STDS)
    x, x2 = images(5, size=6), images(3, size=6, seed=3)
    whole = kernel_gradients(net, x)[1], kernel_gradients(net, x, x2)[1]
    monkeypatch.setattr(gradients, "SPATIAL_ENTRIES", 2 * 36 * 36)
    tiled = kernel_gradients(net, x)[1], kernel_gradients(net, x, x2)[1]
    for a, b in zip(whole, tiled, strict=True):
        for name in STDS:
            for f in ("nngp", "ntk"):
                assert torch.allclose(getattr(a[name], f), getattr(b[name], f), rtol=1e-13,
                                      atol=0)
