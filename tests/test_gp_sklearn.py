"""infnet.gp.NetworkKernel: scikit-learn's kernel semantics, exact log-space gradients, and
marginal-likelihood learning of w_std and b_std."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

import infnet
from infnet.gp import NetworkKernel, NetworkParamKernel


def inputs(n=12, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_kernel_semantics():
    k = NetworkKernel("erf", depth=2, w_std=1.3, b_std=0.4)
    params = k.get_params()
    assert params["w_std"] == 1.3 and params["activation"] == "erf"
    assert clone(k) == k and clone(k) is not k
    assert [h.name for h in k.hyperparameters] == ["b_std", "w_std"]  # scikit-learn's order
    assert np.allclose(k.theta, np.log([0.4, 1.3]), rtol=0, atol=1e-15)
    assert k.bounds.shape == (2, 2)
    other = k.clone_with_theta(np.log([0.2, 2.0]))
    assert other.b_std == pytest.approx(0.2) and other.w_std == pytest.approx(2.0)
    X = inputs()
    K = k(X)
    assert K.shape == (12, 12) and np.array_equal(K, K.T)
    assert np.allclose(k.diag(X), np.diag(K), rtol=1e-13, atol=0)
    assert np.allclose(k(X, X[:4]), K[:, :4], rtol=1e-13, atol=0)
    assert np.array_equal(pickle.loads(pickle.dumps(k))(X), K)
    assert not k.is_stationary() and k.requires_vector_input
    # the kernel algebra, with gradients of every free hyperparameter
    total = ConstantKernel(2.0) * k + WhiteKernel(0.1)
    Kt, grad = total(X, eval_gradient=True)
    assert np.allclose(Kt, 2.0 * K + 0.1 * np.eye(12), rtol=1e-13)
    assert grad.shape == (12, 12, 4)
    # b_std = 0 fixes the bias: one free hyperparameter
    assert NetworkKernel("relu", b_std=0.0).n_dims == 1


def assert_theta_gradient(k, X, grad, h=1e-4):
    """grad (n, n, free hyperparameters) against the 4th-order central difference of the
    kernel in each log-space hyperparameter: within 1e-7 of its largest entry."""
    for j in range(len(k.theta)):
        def at(step, j=j):
            theta = k.theta.copy()
            theta[j] += step
            return k.clone_with_theta(theta)(X)
        fd = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
        assert np.abs(grad[..., j] - fd).max() < 1e-7 * np.abs(fd).max(), j


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize("act", ["relu", "swish"])
def test_log_space_gradient_matches_finite_differences(kind, act):
    k = NetworkKernel(act, depth=2, w_std=1.2, b_std=0.3, kind=kind)
    X = inputs(8, 3, 1)
    X[5] = X[2]  # a duplicated input
    K, grad = k(X, eval_gradient=True)
    assert_theta_gradient(k, X, grad)


def test_activation_parameter_as_a_hyperparameter():
    """NetworkParamKernel(activation_param="beta"): a third log-space hyperparameter, its
    gradient exact (finite differences in theta), kept by clone and shown by repr."""
    k = NetworkParamKernel("swish", depth=2, w_std=1.2, b_std=0.3, activation_param="beta",
                           activation_value=1.5, activation_value_bounds=(0.1, 10.0))
    assert [h.name for h in k.hyperparameters] == ["activation_value", "b_std", "w_std"]
    assert np.allclose(k.theta, np.log([1.5, 0.3, 1.2]), rtol=0, atol=1e-15)
    assert clone(k).get_params()["activation_value"] == 1.5 and "beta=1.5" in repr(k)
    X = inputs(8, 3, 4)
    X[6] = X[1]
    K, grad = k(X, eval_gradient=True)
    want = infnet.fc(infnet.activation("swish", beta=1.5), 2, w_std=1.2, b_std=0.3).kernel(
        torch.from_numpy(X)).nngp.numpy()
    assert np.allclose(K, want, rtol=1e-14, atol=0)
    assert_theta_gradient(k, X, grad)
    with pytest.raises(ValueError, match="must be a number > 0"):
        NetworkParamKernel("swish", activation_param="beta", activation_value=None)(X)
    with pytest.raises(TypeError, match="unknown hyperparameter 'beta'"):
        NetworkParamKernel("relu", activation_param="beta")(X)


def test_marginal_likelihood_recovers_w_and_b():
    """Targets drawn from the NNGP of a depth-2 erf network with w_std = 1.4, b_std = 0.5 (plus
    noise of known variance): the fitted values lie within 3 standard deviations of the truth,
    the deviations from the curvature of the log marginal likelihood at the optimum (Laplace)."""
    truth = NetworkKernel("erf", depth=2, w_std=1.4, b_std=0.5)
    X = inputs(150, 3, 2)
    noise = 1e-2
    rng = np.random.default_rng(3)
    y = np.linalg.cholesky(truth(X) + noise * np.eye(150)) @ rng.normal(size=150)
    start = NetworkKernel("erf", depth=2, w_std=1.0, b_std=0.1)
    gpr = GaussianProcessRegressor(start + WhiteKernel(noise, "fixed"), n_restarts_optimizer=1,
                                   random_state=0).fit(X, y)
    theta = gpr.kernel_.theta  # log b, log w
    h = 1e-4
    hess = np.empty((2, 2))
    for j in range(2):
        step = np.eye(2)[j] * h
        hess[j] = (gpr.log_marginal_likelihood(theta + step, eval_gradient=True)[1]
                   - gpr.log_marginal_likelihood(theta - step, eval_gradient=True)[1]) / (2 * h)
    cov = np.linalg.inv(-(hess + hess.T) / 2)
    spread = np.sqrt(np.diag(cov))
    deviation = np.abs(theta - np.log([0.5, 1.4])) / spread
    assert (deviation < 3).all(), (np.exp(theta), spread, deviation)
    assert (spread < 0.5).all()  # the data do pin both down (here 0.22 for b, 0.035 for w)


def test_classifier():
    from sklearn.datasets import load_digits

    X, y = load_digits(n_class=2, return_X_y=True)
    X = X[:120] / 16.0
    y = y[:120]
    clf = GaussianProcessClassifier(NetworkKernel("relu", depth=2), random_state=0)
    clf.fit(X[:80], y[:80])
    assert clf.score(X[80:], y[80:]) > 0.9


def test_bad_input():
    with pytest.raises(ValueError, match="outside its bounds"):
        NetworkKernel(w_std=5.0, w_std_bounds=(0.1, 2.0))(inputs())
    with pytest.raises(ValueError, match="kind must be"):
        NetworkKernel(kind="gram")(inputs())
    with pytest.raises(ValueError, match="2-D"):
        NetworkKernel()(np.ones(3))
    with pytest.raises(ValueError, match="must be a finite number"):
        NetworkKernel(w_std=-1.0, w_std_bounds="fixed")(inputs())
    with pytest.raises(ValueError, match="Y is None"):
        NetworkKernel()(inputs(), inputs(), eval_gradient=True)
    assert "erf" in repr(NetworkKernel("erf"))
    assert isinstance(NetworkKernel().network(), infnet.Network)


# scikit-learn's own kernel tests (sklearn/gaussian_process/tests/test_kernels.py), each called
# on the adapter: test_kernel_stationary is for stationary kernels only, and test_kernel_theta
# compares slices of theta with `==` inside an assert, which works for at most two
# hyperparameters (so NetworkParamKernel, with three, skips it; its theta is checked above)
OWN_TESTS = ["test_auto_vs_cross", "test_kernel_clone", "test_kernel_clone_after_set_params",
             "test_kernel_diag", "test_kernel_gradient", "test_kernel_input_type",
             "test_kernel_theta", "test_kernel_versus_pairwise", "test_repr_kernels",
             "test_set_get_params"]


@pytest.mark.parametrize("name", OWN_TESTS)
def test_scikit_learns_own_kernel_tests(name):
    own = pytest.importorskip("sklearn.gaussian_process.tests.test_kernels")
    kernels = [NetworkKernel("erf", depth=2, w_std=1.3, b_std=0.4),
               NetworkKernel("relu", depth=3, kind="ntk"),
               NetworkKernel("swish", depth=1, w_std=0.9, b_std=0.2)]
    if name != "test_kernel_theta":
        kernels += [ConstantKernel(2.0) * NetworkKernel("erf", depth=1),
                    NetworkParamKernel("swish", depth=2, activation_value=1.5)]
    for kernel in kernels:
        getattr(own, name)(kernel)
    # a convolutional architecture (CNN-GAP) on sklearn's X of 2 features: 1 x 2 "images" of
    # one channel, rows flattened
    conv = infnet.network.cnn("erf", 1, readout="gap", filter_shape=(3,), w_std=1.3, b_std=0.4)
    getattr(own, name)(NetworkKernel(architecture=conv, w_std=1.3, b_std=0.4,
                                     input_shape=(1, 2)))


def test_convolutional_architecture():
    """Rows of X as flattened 4 x 4 images of two channels: the kernel, its log-space gradient
    (finite differences) and diag of a ReLU CNN-GAP network, and a GPR fit that learns w, b."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import WhiteKernel

    conv = infnet.network.cnn("relu", 2, readout="gap", w_std=1.3, b_std=0.4)
    k = NetworkKernel(architecture=conv, w_std=1.1, b_std=0.2, input_shape=(2, 4, 4))
    X = np.random.default_rng(0).normal(size=(6, 32))
    images = torch.as_tensor(X).reshape(6, 2, 4, 4)
    want = infnet.network.cnn("relu", 2, readout="gap", w_std=1.1, b_std=0.2).kernel(images)
    K, grad = k(X, eval_gradient=True)
    assert np.allclose(K, want.nngp.numpy(), rtol=1e-14, atol=0)
    assert np.allclose(k.diag(X), np.diag(K), rtol=1e-12, atol=0)
    assert_theta_gradient(k, X, grad)
    assert repr(k).startswith("NetworkKernel(architecture of 6 layers (Conv, Nonlinearity, "), repr(k)
    y = np.sin(X[:, 0]) + 0.1 * X[:, 1]
    gpr = GaussianProcessRegressor(k + WhiteKernel(1e-2, "fixed"), random_state=0).fit(X, y)
    assert gpr.log_marginal_likelihood_value_ >= gpr.log_marginal_likelihood(
        gpr.kernel.theta) - 1e-9
    with pytest.raises(ValueError, match="input_shape"):
        k(X[:, :30])
