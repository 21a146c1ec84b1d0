"""Predictors of infinitely wide networks (infnet.predict), each checked against an independent
computation: a dense solve, a numerical integration of the gradient-flow ODE, the GP formulas
written out, the covariance of the linear map of a Gaussian, scipy's multivariate normal."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.stats import multivariate_normal

import infnet
from infnet import predict as P


@pytest.fixture(autouse=True)
def _float64():
    """float64 by default inside this module only (restored after each test)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _problem(n=40, m=9, outputs=3, seed=0):
    """A ReLU network's NNGP and NTK on random inputs, and targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + m, 6, generator=g)
    k = infnet.fc("relu", depth=2, w_std=2**0.5, b_std=0.1).kernel(x)
    y = torch.randn(n, outputs, generator=g)
    return x, k, y, n


def test_infinite_time_is_kernel_regression():
    x, k, y, n = _problem()
    ntk = k.ntk
    flow = P.gradient_descent_mse(ntk[:n, :n], y)
    ref = ntk[n:, :n] @ torch.linalg.solve(ntk[:n, :n], y)
    assert torch.allclose(flow.predict(ntk[n:, :n]), ref, rtol=1e-9, atol=1e-11)
    assert torch.allclose(flow.predict_train(), y, atol=1e-12)
    # with a ridge: kernel ridge regression, train outputs Theta (Theta + lambda)^-1 Y
    ridge = 0.3
    flow = P.gradient_descent_mse(ntk[:n, :n], y, ridge=ridge)
    a = torch.linalg.solve(ntk[:n, :n] + ridge * torch.eye(n), y)
    assert torch.allclose(flow.predict(ntk[n:, :n]), ntk[n:, :n] @ a, atol=1e-12)
    assert torch.allclose(flow.predict_train(), ntk[:n, :n] @ a, atol=1e-12)


@pytest.mark.parametrize("ridge", [0.0, 0.2])
@pytest.mark.parametrize("t", [0.5, 7.0, 300.0])
def test_finite_time_matches_the_gradient_flow_ode(t, ridge):
    """df/dt on the training and test points by RK45 (tight tolerances), from f_0 != 0: the
    linearized network with weight decay: d(f - f0)/dt = -eta/N [Theta(., X)(f(X) - Y) +
    ridge (f - f0)]."""
    x, k, y, n = _problem(n=25, m=6, outputs=2, seed=1)
    theta = k.ntk.numpy()
    eta, N = 0.7, y.numel()
    g = torch.Generator().manual_seed(5)
    f0 = torch.randn(theta.shape[0], 2, generator=g).numpy()

    def rhs(_, flat):
        f = flat.reshape(-1, 2)
        return (-eta / N * (theta[:, :n] @ (f[:n] - y.numpy()) + ridge * (f - f0))).ravel()

    sol = solve_ivp(rhs, (0, t), f0.ravel(), method="DOP853", rtol=1e-12, atol=1e-13)
    f_t = sol.y[:, -1].reshape(-1, 2)
    flow = P.gradient_descent_mse(k.ntk[:n, :n], y, learning_rate=eta, ridge=ridge)
    test = flow.predict(k.ntk[n:, :n], t, f0_train=f0[:n], f0_test=f0[n:])
    train = flow.predict_train(t, f0_train=f0[:n])
    np.testing.assert_allclose(test.numpy(), f_t[n:], rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(train.numpy(), f_t[:n], rtol=1e-8, atol=1e-9)


def test_finite_time_tends_to_infinite_time_and_zero_time_is_zero():
    _, k, y, n = _problem()
    flow = P.gradient_descent_mse(k.nngp[:n, :n], y)
    assert torch.equal(flow.predict(k.nngp[n:, :n], 0.0), torch.zeros(k.nngp.shape[0] - n, 3))
    late = flow.predict(k.nngp[n:, :n], 1e9)
    assert torch.allclose(late, flow.predict(k.nngp[n:, :n]), rtol=1e-6, atol=1e-8)


def test_gp_posterior_matches_the_direct_formulas():
    x, k, y, n = _problem()
    K = k.nngp
    ridge = 0.05
    gp = P.gp_inference(K[:n, :n], y, ridge=ridge)
    A = (K[:n, :n] + ridge * torch.eye(n)).numpy()
    Ks, Kss = K[n:, :n].numpy(), K[n:, n:].numpy()
    mean = Ks @ np.linalg.inv(A) @ y.numpy()
    cov = Kss - Ks @ np.linalg.inv(A) @ Ks.T
    np.testing.assert_allclose(gp.mean(K[n:, :n]).numpy(), mean, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gp.covariance(K[n:, :n], K[n:, n:]).numpy(), cov, atol=1e-11)
    np.testing.assert_allclose(gp.variance(K[n:, :n], K[n:, n:].diagonal()).numpy(),
                               np.diag(cov), atol=1e-11)
    ll = sum(multivariate_normal(cov=A).logpdf(y[:, j].numpy()) for j in range(y.shape[1]))
    assert gp.log_marginal_likelihood() == pytest.approx(ll, rel=1e-11)


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [2.0, math.inf])
def test_ensemble_covariance_is_that_of_the_linear_map(kind, t):
    """f_t = f_0(x) + Theta(x, X) A (Y - f_0(X)), A = Theta^-1 (I - expm(-eta Theta t / N)),
    with f_0 ~ N(0, K) jointly on train and test: mean M.0 + Theta(x,X) A Y, cov M K M^T."""
    x, k, y, n = _problem(n=20, m=5, outputs=1, seed=2)
    net = infnet.fc("relu", depth=2, w_std=2**0.5, b_std=0.1)
    ens = P.Ensemble(net, x[:n], y[:, 0], kind=kind, learning_rate=2.0)
    mean, cov = ens.predict(x[n:], t, covariance=True)
    theta = k.get(kind)
    s = 2.0 * t / n
    expm = torch.zeros(n, n) if math.isinf(t) else torch.linalg.matrix_exp(-theta[:n, :n] * s)
    A = torch.linalg.solve(theta[:n, :n], torch.eye(n) - expm)
    M = torch.cat([-theta[n:, :n] @ A, torch.eye(len(x) - n)], dim=1)  # acts on [f0(X), f0(x)]
    order = torch.cat([torch.arange(n), torch.arange(n, len(x))])
    K = k.nngp[order][:, order]
    assert torch.allclose(mean, theta[n:, :n] @ A @ y[:, 0], atol=1e-9)
    assert torch.allclose(cov, M @ K @ M.T, atol=1e-8)
    if kind == "nngp" and math.isinf(t):  # the GP posterior
        post = k.nngp[n:, n:] - k.nngp[n:, :n] @ torch.linalg.solve(k.nngp[:n, :n], k.nngp[:n, n:])
        assert torch.allclose(cov, post, atol=1e-8)


def test_singular_kernel_gets_reported_jitter_not_nan():
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(3))
    x = torch.cat([x, x[:4]])  # duplicated points: K(X, X) singular
    y = torch.randn(14, generator=torch.Generator().manual_seed(4))
    y[10:] = y[:4]
    K = infnet.fc("relu", depth=2, w_std=2**0.5).kernel(x).ntk
    with pytest.warns(P.JitterWarning, match="jitter of"):
        flow = P.gradient_descent_mse(K, y)
        f = flow.predict(K)
    assert flow.cholesky.jitter > 0
    assert bool(torch.isfinite(f).all())
    assert torch.allclose(f, y, atol=1e-3)  # still interpolates the (consistent) labels


def test_not_a_kernel_or_nan_is_a_clear_error():
    K = torch.eye(5)
    K[0, 0] = -1.0
    with pytest.raises(P.NotPositiveDefiniteError, match="not positive definite"):
        P.cholesky(K)
    K = torch.eye(5)
    K[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        P.gradient_descent_mse(K, torch.ones(5))
    with pytest.raises(ValueError, match=r"shape \(5,\) or \(5, outputs\)"):
        P.gradient_descent_mse(torch.eye(5), torch.ones(4))
    with pytest.raises(ValueError, match="NaN or inf"):
        P.gradient_descent_mse(torch.eye(5), torch.tensor([1.0, 2, math.nan, 0, 0]))
    flow = P.gradient_descent_mse(torch.eye(5), torch.ones(5))
    with pytest.raises(ValueError, match=r"shape \(m, 5\)"):
        flow.predict(torch.ones(3, 4))
    with pytest.raises(ValueError, match="training time"):
        flow.predict(torch.ones(3, 5), -1.0)
    with pytest.raises(ValueError, match="ridge"):
        P.cholesky(torch.eye(3), ridge=-1.0)


def test_a_matrix_that_is_not_symmetric_is_refused_and_rounding_is_not():
    """The solves read one triangle: an asymmetric K would give predictions inconsistent with
    it. A Gram matrix with asymmetric rounding (1e-15 relative) is accepted and gives the
    solution of its symmetric part."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    K = x @ x.T + torch.eye(30, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)
    bad = K.clone()
    bad[3, 17] += 1e-6 * float(K.diagonal().max())
    for make in (lambda k: P.gradient_descent_mse(k, y).predict(k[:2]),
                 lambda k: P.gp_inference(k, y).mean(k[:2]), lambda k: P.cholesky(k),
                 lambda k: P.gradient_descent_mse(k, y).predict(k[:2], t=1.0)):
        with pytest.raises(ValueError, match=r"not symmetric: K\[3, 17\] and K\[17, 3\]"):
            make(bad)
    rounded = K.clone()
    rounded[3, 17] *= 1 + 1e-15
    sym = (rounded + rounded.T) / 2
    got = P.gradient_descent_mse(rounded, y).predict(sym[:2])
    want = sym[:2] @ torch.linalg.solve(sym, y)
    assert torch.allclose(got.reshape(-1), want, rtol=1e-10, atol=0)


def test_in_place_factor_uses_the_kernel_memory_and_matches():
    _, k, y, n = _problem()
    K = k.ntk[:n, :n].contiguous()
    ref = P.gradient_descent_mse(K.clone(), y).predict(k.ntk[n:, :n])
    mine = K.clone()
    flow = P.gradient_descent_mse(mine, y, overwrite=True)
    out = flow.predict(k.ntk[n:, :n])
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-13)
    assert flow.cholesky.factor.data_ptr() == mine.data_ptr()  # factored where K was
    assert not torch.equal(mine, K)


def test_failed_in_place_attempt_is_restored_before_the_jitter():
    """The first potrf attempt fails part way; the matrix retried must be K + jitter exactly:
    L L^T reproduces K + jitter I (the factor entries themselves are ill-conditioned here)."""
    g = torch.Generator().manual_seed(8)
    a = torch.randn(30, 12, generator=g)
    K = a @ a.T  # rank 12 of 30
    with pytest.warns(P.JitterWarning):
        chol = P.cholesky(K.clone(), overwrite=True)
    L = chol.factor
    assert torch.equal(L, L.tril())
    target = K + chol.jitter * torch.eye(30)
    assert (L @ L.T - target).abs().max() < 1e-13 * target.abs().max()


def test_backup_restores_the_kernel_exactly():
    from infnet.predict.solve import _Backup

    g = torch.Generator().manual_seed(9)
    a = torch.randn(2500, 40, generator=g)
    K = a @ a.T
    K = (K + K.T) / 2
    work = K.clone()
    with _Backup(work) as backup:
        work.uniform_()  # destroyed
        backup.restore(work)
    assert torch.equal(work, K)


def test_float32_and_eigen_paths():
    _, k, y, n = _problem()
    K32 = k.ntk[:n, :n].float()
    flow = P.gradient_descent_mse(K32, y.float())
    ref = k.ntk[n:, :n] @ torch.linalg.solve(k.ntk[:n, :n], y)
    out = flow.predict(k.ntk[n:, :n].float())
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), ref, rtol=1e-2, atol=1e-2)
    e = P.eigen(k.ntk[:n, :n], ridge=0.5)
    rebuilt = e.vectors @ torch.diag(e.values) @ e.vectors.T
    assert torch.allclose(rebuilt, k.ntk[:n, :n] + 0.5 * torch.eye(n), atol=1e-11)


def test_limit_scores_nearest_neighbour_class():
    """The Hermite h_2 network's infinitely deep classifier is 1-NN (by angle)."""
    from infnet.data import dirichlet_sphere
    from infnet.estimators.sphere import NearestNeighbor

    x, y = dirichlet_sphere(300, d=3, seed=0)
    net = infnet.fc(infnet.from_hermite([0, 0, 1]), depth=math.inf)
    Y = torch.as_tensor(np.stack([y == -1, y == 1], 1).astype(float))
    scores = P.limit_scores(net.limit, net.correlations(x[200:], x[:200]), Y)
    pred = np.where(scores.argmax(1).numpy() == 1, 1, -1)
    assert (pred == NearestNeighbor().fit(x[:200], y[:200]).predict(x[200:])).all()


def test_jitter_warning_is_not_raised_for_a_healthy_kernel():
    _, k, y, n = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.gradient_descent_mse(k.ntk[:n, :n], y).predict(k.ntk[n:, :n])
