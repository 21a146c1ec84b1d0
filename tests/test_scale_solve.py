"""The iterative kernel-regression solver (infnet.scale.solve), checked against dense linear
algebra: the Cholesky solve of the dense kernel, dense products for the residuals, the dense
formula of the preconditioner, the exactness of Nystrom on low-rank matrices."""

from __future__ import annotations

import math
import time
import warnings

import pytest
import torch

import infnet
from infnet.predict import NotPositiveDefiniteError, cholesky
from infnet.scale.nystrom import default_rank, nystrom
from infnet.scale.operators import DenseOperator, KernelOperator, NetworkOperator, predict
from infnet.scale.solve import ConvergenceWarning, solve

RELU = dict(act="relu", depth=3, w_std=2**0.5)


def _net():
    return infnet.fc(**RELU)


def _clusters(n, d=32, classes=10, seed=0):
    """Unit-norm points around ``classes`` random centers, and their one-hot labels."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    x = centers[labels] + 1.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    return x, torch.nn.functional.one_hot(labels, classes).to(torch.float64)


def _sphere(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _relative_residuals(k, ridge, alpha, y):
    """|y - (K + ridge I) alpha| / |y| per output, with a dense product."""
    r = y - (k @ alpha + ridge * alpha)
    return r.norm(dim=0) / y.norm(dim=0)


def _quiet(**kwargs):
    return dict(progress=False, **kwargs)


# ---- operators ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("unit", [True, False])
def test_network_operator_is_the_dense_kernel(kind, unit):
    """matvec, columns and diagonal of the on-the-fly tiles (several strips, a ragged last one)
    equal those of the dense kernel, for inputs of one norm (angle table) and of many (exact)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(230, 7, generator=g, dtype=torch.float64)
    if unit:
        x = x / x.norm(dim=1, keepdim=True)
    net = infnet.fc("relu", depth=3, w_std=2**0.5, b_std=0.2)
    k = net.kernel(x, get=kind).get(kind)
    op = NetworkOperator(net, x, kind=kind, tile=64)
    assert isinstance(op, KernelOperator) and op.n == 230 and op.dtype == torch.float64
    v = torch.randn(230, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), k @ v, rtol=1e-12, atol=1e-12)
    idx = torch.tensor([5, 0, 229, 64, 63])
    torch.testing.assert_close(op.columns(idx), k[:, idx], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(op.diagonal(), k.diagonal(), rtol=1e-14, atol=0)


def test_network_operator_float32_and_infinite_depth():
    x = _sphere(150, 5)
    net = _net()
    k = net.kernel(x, get="ntk").ntk
    op = NetworkOperator(net, x, tile=40, dtype=torch.float32)
    v = torch.randn(150, 2, dtype=torch.float64)
    out = op.matvec(v)
    assert out.dtype == torch.float32 and op.columns(torch.tensor([1])).dtype == torch.float32
    torch.testing.assert_close(out.double(), k @ v, rtol=2e-6, atol=2e-6)
    # a network without a diagonal pass: the diagonal comes from the diagonal blocks
    deep = infnet.fc("relu", depth=math.inf)
    op = NetworkOperator(deep, x, kind="nngp", tile=64)
    torch.testing.assert_close(op.diagonal(), deep.kernel(x).nngp.diagonal())


def test_dense_operator_checks_its_matrix():
    assert isinstance(DenseOperator(torch.eye(3)), KernelOperator)
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.ones(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        DenseOperator(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


# ---- the preconditioner -------------------------------------------------------------------------
@pytest.mark.parametrize("sketch", ["columns", "gaussian"])
def test_nystrom_is_exact_on_low_rank_matrices_and_its_inverse_is_the_formula(sketch):
    """On a PSD matrix of rank 6 a sketch of rank 20 recovers it (Frangella et al. 2021, the
    approximation lies in the range of K Omega); P^-1 equals the dense formula of Eq. 5.3."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    k = a @ a.T
    pre = nystrom(DenseOperator(k), 20, mu=0.5, sketch=sketch, seed=3)
    assert pre.rank == 6  # the 14 zero eigenvalues (after the shift) are dropped
    approx = pre.U @ torch.diag(pre.eigenvalues) @ pre.U.T
    torch.testing.assert_close(approx, k, rtol=0, atol=1e-9 * float(k.abs().max()))
    torch.testing.assert_close(pre.eigenvalues, torch.linalg.eigvalsh(k).flip(0)[:6], rtol=1e-9, atol=0)
    lam, mu, u = pre.eigenvalues, pre.mu, pre.U
    dense = (lam[-1] + mu) * u @ torch.diag(1 / (lam + mu)) @ u.T + torch.eye(300) - u @ u.T
    r = torch.randn(300, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pre.apply(r), dense @ r, rtol=1e-12, atol=1e-12)


def test_nystrom_on_the_kernel_approximates_its_top_eigenvalues():
    x = _sphere(600, 6)
    k = _net().kernel(x, get="ntk").ntk
    top = torch.linalg.eigvalsh(k).flip(0)
    pre = nystrom(NetworkOperator(_net(), x, tile=256), 200, sketch="columns")
    assert pre.rank == 200 and bool((pre.eigenvalues[:-1] >= pre.eigenvalues[1:]).all())
    # Nystrom underestimates (K - approx is PSD); the leading eigenvalues are close
    approx = pre.U @ torch.diag(pre.eigenvalues) @ pre.U.T
    assert float(torch.linalg.eigvalsh(k - approx)[0]) > -1e-10 * float(top[0])
    assert bool((pre.eigenvalues <= top[:200] * (1 + 1e-10)).all())
    torch.testing.assert_close(pre.eigenvalues[0], top[0], rtol=1e-2, atol=0)
    assert float(pre.eigenvalues.sum()) > 0.9 * float(top[:200].sum())


# ---- the solve ----------------------------------------------------------------------------------
def test_iterative_solve_matches_cholesky_n5000():
    """n = 5000, ReLU NTK of depth 3 on unit-norm clustered data, 10 one-hot outputs, ridge
    1e-6 x mean diagonal: PCG on the on-the-fly tiles (never the n x n matrix) agrees with the
    Cholesky solve of the dense kernel, on the coefficients and on test predictions."""
    n, net = 5000, _net()
    x, y = _clusters(n + 300)
    x, x_test, y = x[:n], x[n:], y[:n]
    op = NetworkOperator(net, x)
    ridge = 1e-6 * float(op.diagonal().mean())
    begin = time.perf_counter()
    alpha, info = solve(op, y, ridge=ridge, tol=1e-10, **_quiet())
    elapsed = time.perf_counter() - begin
    k = net.kernel(x, get="ntk").ntk
    direct = cholesky(k, ridge).solve(y)
    print(f"\nn = {n}: {info.iterations} iterations, rank {info.rank}, {elapsed:.1f} s "
          f"(preconditioner {info.setup_time:.1f} s)")
    assert info.converged and info.rank == default_rank(n)
    assert float((alpha - direct).norm() / direct.norm()) < 1e-6
    for j in range(10):
        assert float((alpha[:, j] - direct[:, j]).norm() / direct[:, j].norm()) < 1e-6
    assert bool((_relative_residuals(k, ridge, alpha, y) < 1e-10).all())
    del k
    ours = predict(net, x_test, x, alpha, tile=128)
    ref = net.kernel(x_test, x, get="ntk").ntk @ direct
    assert float((ours - ref).norm() / ref.norm()) < 1e-6


@pytest.mark.parametrize("sketch", ["columns", "gaussian"])
def test_nystrom_preconditioner_cuts_the_iterations(sketch):
    """d = 5 on the sphere: a slowly decaying NTK spectrum, condition number ~1e4."""
    x = _sphere(2000, 5)
    k = _net().kernel(x, get="ntk").ntk
    y = torch.randn(2000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    op = DenseOperator(k)
    ridge = 1e-6 * float(k.diagonal().mean())
    _, plain = solve(op, y, ridge=ridge, tol=1e-8, preconditioner="none", **_quiet())
    _, pre = solve(op, y, ridge=ridge, tol=1e-8, rank=300, sketch=sketch, **_quiet())
    print(f"\niterations: {plain.iterations} without, {pre.iterations} with Nystrom ({sketch})")
    assert plain.converged and pre.converged and pre.rank == 300 and plain.rank == 0
    assert plain.iterations >= 3 * pre.iterations
    assert pre.matvecs == pre.iterations + 1 + (sketch == "gaussian")  # + the final check


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-11])
def test_each_output_stops_at_its_residual(tol):
    """Outputs of very different difficulty: each stops when its own |r|/|y| < tol, the true
    residual (a dense product) is below tol, and a looser tol takes fewer iterations."""
    x = _sphere(700, 6, seed=5)
    k = _net().kernel(x, get="ntk").ntk
    g = torch.Generator().manual_seed(6)
    evals, evecs = torch.linalg.eigh(k)
    y = torch.stack([evecs[:, -1], torch.randn(700, generator=g, dtype=torch.float64),
                     evecs[:, :50] @ torch.randn(50, generator=g, dtype=torch.float64)], dim=1)
    alpha, info = solve(DenseOperator(k), y, tol=tol, preconditioner="none", **_quiet())
    assert info.converged and bool(info.converged_outputs.all())
    assert bool((_relative_residuals(k, 0.0, alpha, y) < tol).all())
    assert bool((info.final_residuals < tol).all())
    assert info.residuals.shape == (info.iterations + 1, 3)
    assert torch.equal(info.residuals[0], torch.ones(3, dtype=torch.float64))
    stops = info.iterations_per_output
    assert int(stops.max()) == info.iterations and int(stops[0]) == 1  # an eigenvector: one step
    for j in range(3):  # above tol before its stop, below from then on
        s = int(stops[j])
        assert bool((info.residuals[:s, j] >= tol).all()) and float(info.residuals[s, j]) < tol
    if tol > 1e-6:
        _, tight = solve(DenseOperator(k), y, tol=1e-11, preconditioner="none", **_quiet())
        assert tight.iterations > info.iterations


def test_zero_ridge_one_output_and_zero_targets():
    x = _sphere(400, 8, seed=7)
    k = _net().kernel(x, get="ntk").ntk
    y = torch.randn(400, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    alpha, info = solve(DenseOperator(k), y, tol=1e-12, **_quiet())
    assert alpha.shape == (400,) and info.converged
    torch.testing.assert_close(alpha, torch.linalg.solve(k, y), rtol=1e-8, atol=1e-8)
    both = torch.stack([y, torch.zeros(400, dtype=torch.float64)], dim=1)
    alpha, info = solve(DenseOperator(k), both, tol=1e-10, **_quiet())
    assert info.converged and torch.equal(alpha[:, 1], torch.zeros(400, dtype=torch.float64))
    assert int(info.iterations_per_output[1]) == 0


def test_float32_operator_solves_to_its_precision():
    n = 1500
    x, y = _clusters(n, d=16, seed=9)
    net = _net()
    op = NetworkOperator(net, x, tile=512, dtype=torch.float32)
    ridge = 1e-4 * float(op.diagonal().mean())
    alpha, info = solve(op, y, ridge=ridge, tol=1e-5, **_quiet())
    k = net.kernel(x, get="ntk").ntk
    assert info.converged and alpha.dtype == torch.float64
    assert bool((_relative_residuals(k, ridge, alpha, y) < 3e-5).all())
    direct = cholesky(k, ridge).solve(y)
    assert float((alpha - direct).norm() / direct.norm()) < 1e-3
    with pytest.warns(ConvergenceWarning, match="float32"):
        _, info = solve(op, y, ridge=ridge, tol=1e-12, max_iter=15, **_quiet())
    assert not info.converged


def test_max_iter_warns_and_reports_not_converged():
    x = _sphere(500, 5)
    k = _net().kernel(x, get="ntk").ntk
    y = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        alpha, info = solve(DenseOperator(k), y, tol=1e-12, max_iter=4, preconditioner="none",
                            **_quiet())
    assert not info.converged and info.iterations == 4
    assert not bool(info.converged_outputs.any())
    torch.testing.assert_close(info.final_residuals, _relative_residuals(k, 0.0, alpha, y))
    assert bool((info.final_residuals > 1e-12).all())


class _Rounded(DenseOperator):
    """Products correct to ~3 digits only (bfloat16): the true residual cannot reach 1e-6."""

    def matvec(self, v):
        return super().matvec(v).to(torch.bfloat16).to(torch.float64)


def test_inaccurate_products_are_reported_not_hidden():
    k = _net().kernel(_sphere(300, 4), get="ntk").ntk
    y = torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    with pytest.warns(ConvergenceWarning, match="not accurate enough"):
        alpha, info = solve(_Rounded(k), y, tol=1e-6, max_iter=2000, **_quiet())
    assert not info.converged and info.iterations < 2000  # it gave up after its restarts
    assert bool((info.final_residuals >= 1e-6).all())
    assert bool((_relative_residuals(k, 0.0, alpha, y) >= 1e-6).all())


def test_progress_bar_reports(capsys):
    k = _net().kernel(_sphere(200, 4), get="ntk").ntk
    _, info = solve(DenseOperator(k), torch.ones(200, 2, dtype=torch.float64), tol=1e-6)
    assert info.converged
    err = capsys.readouterr().err
    assert "CG" in err and "outputs done" in err


# ---- errors -------------------------------------------------------------------------------------
class _WrongShape(DenseOperator):
    def matvec(self, v):
        return super().matvec(v)[:-1]


class _NaNs(DenseOperator):
    def matvec(self, v):
        return super().matvec(v) * float("nan")


#: unit diagonal, eigenvalue -1 along (1, ..., 1)
_INDEFINITE = torch.eye(10, dtype=torch.float64) - 0.2 * torch.ones(10, 10, dtype=torch.float64)


@pytest.mark.parametrize("bad, error, match", [
    (dict(Y=torch.ones(9, 2)), ValueError, "9 rows but the kernel is 10 x 10"),
    (dict(Y=torch.full((10, 2), float("nan"))), ValueError, "NaN"),
    (dict(Y=torch.ones(10, 2, 2)), ValueError, "shape"),
    (dict(ridge=-1e-3), ValueError, "ridge"),
    (dict(ridge=float("nan")), ValueError, "ridge"),
    (dict(tol=0.0), ValueError, "tol"),
    (dict(tol=2.0), ValueError, "tol"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(rank=0), ValueError, "rank"),
    (dict(preconditioner="jacobi"), ValueError, "preconditioner"),
    (dict(sketch="srht"), ValueError, "sketch"),
    (dict(op=_WrongShape(torch.eye(10))), ValueError, r"matvec returned shape \(9, 2\), expected \(10, 2\)"),
    (dict(op=_NaNs(torch.eye(10)), preconditioner="none"), FloatingPointError, "NaN"),
    (dict(op=object()), TypeError, "lacks n, matvec, columns, diagonal, dtype"),
    (dict(op=DenseOperator(-torch.eye(10))), NotPositiveDefiniteError, "positive diagonal"),
    (dict(op=DenseOperator(_INDEFINITE), preconditioner="none"), NotPositiveDefiniteError,
     r"p\^T \(K \+ ridge I\) p = .* not positive definite"),
    (dict(op=DenseOperator(_INDEFINITE)), NotPositiveDefiniteError, "not positive semi-definite"),
])
def test_bad_input_is_a_clear_error(bad, error, match):
    args = dict(op=DenseOperator(torch.eye(10, dtype=torch.float64)), Y=torch.ones(10, 2))
    args.update(bad)
    op, y = args.pop("op"), args.pop("Y")
    with pytest.raises(error, match=match):
        solve(op, y, progress=False, **args)


def test_network_operator_and_predict_reject_bad_arguments():
    x = _sphere(20, 3)
    with pytest.raises(ValueError, match="kind"):
        NetworkOperator(_net(), x, kind="both")
    with pytest.raises(ValueError, match="tile"):
        NetworkOperator(_net(), x, tile=0)
    with pytest.raises(ValueError, match="NaN"):
        NetworkOperator(_net(), x * float("nan"))
    with pytest.raises(TypeError, match="kernel"):
        NetworkOperator("relu", x)
    with pytest.raises(ValueError, match="alpha has 19 rows"):
        predict(_net(), x, x, torch.ones(19))


def test_predict_with_a_network_or_a_kernel_function():
    net = _net()
    x, x_test = _sphere(90, 4), _sphere(33, 4, seed=11)
    alpha = torch.randn(90, 2, dtype=torch.float64)
    ref = net.kernel(x_test, x, get="ntk").ntk @ alpha
    torch.testing.assert_close(predict(net, x_test, x, alpha, tile=10), ref)
    nngp = predict(net, x_test, x, alpha[:, 0], kind="nngp", tile=7)
    torch.testing.assert_close(nngp, net.kernel(x_test, x, get="nngp").nngp @ alpha[:, 0])

    def fn(a, b):
        return net.kernel(a, b, get="ntk").ntk

    torch.testing.assert_close(predict(fn, x_test, x, alpha, tile=5), ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(fn, x_test, x, alpha)
