"""infnet.gp.GPyTorchKernel: an ExactGP trains w_std and b_std through the exact gradients, and
its posterior agrees with infnet.predict.gp_inference at the same parameters."""

import sys

import pytest
import torch

import infnet

gpytorch = pytest.importorskip("gpytorch")


class Model(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, kernel):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ZeroMean()
        self.covar_module = kernel

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def problem(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, dtype=torch.float64, generator=g)
    k = infnet.fc("erf", 2, w_std=1.4, b_std=0.5).kernel(x).nngp
    y = torch.linalg.cholesky(k + 1e-2 * torch.eye(n, dtype=torch.float64)) @ torch.randn(
        n, dtype=torch.float64, generator=g)
    return x, y


def model(x, y, w=1.0, b=0.2, kind="nngp"):
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = 1e-2
    likelihood.raw_noise.requires_grad_(False)
    kernel = infnet.gp.GPyTorchKernel("erf", depth=2, w_std=w, b_std=b, kind=kind)
    return Model(x, y, likelihood, kernel).double(), likelihood


@pytest.mark.parametrize("act", ["swish", "erf"])
def test_kernel_values_and_parameter_gradients(act):
    """The quadrature (swish) and a closed form (erf, whose derivatives use forward-mode
    autograd: computed outside the autograd Function, where it would be off and give none)."""
    x, _ = problem(10)
    kernel = infnet.gp.GPyTorchKernel(act, depth=2, w_std=1.3, b_std=0.3)
    net = infnet.fc(act, 2, w_std=1.3, b_std=0.3)
    K = kernel(x).to_dense()
    assert torch.allclose(K, net.kernel(x).nngp, rtol=1e-13, atol=0)
    assert torch.allclose(kernel(x, diag=True), torch.diagonal(K), rtol=1e-13, atol=0)
    assert torch.allclose(kernel(x[:4], x[4:]).to_dense(), K[:4, 4:], rtol=1e-13, atol=0)
    weights = torch.randn(10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (kernel(x).to_dense() * weights).sum().backward()
    _, grads = infnet.gp.kernel_gradients(net, x)
    for name in ("w_std", "b_std"):  # raw parameter = inverse softplus of the value
        value = getattr(kernel, name).detach()
        dvalue_draw = torch.sigmoid(getattr(kernel, f"raw_{name}").detach())
        want = (weights * grads[name].nngp).sum() * dvalue_draw
        assert torch.isclose(getattr(kernel, f"raw_{name}").grad, want, rtol=1e-12), name
        assert value > 0


def test_activation_parameter_is_learned_through_its_exact_gradient():
    """activation_param="beta": a parameter constrained above 1e-6, initialized at swish's beta,
    whose raw gradient is sum(G * dK/dbeta) * sigmoid(raw)."""
    x, _ = problem(8)
    act = infnet.activation("swish", beta=1.7)
    kernel = infnet.gp.GPyTorchKernel(act, depth=2, w_std=1.2, b_std=0.3,
                                      activation_param="beta")
    assert torch.isclose(kernel.activation_value, torch.tensor(1.7, dtype=torch.float64))
    net = infnet.fc(act, 2, w_std=1.2, b_std=0.3)
    weights = torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    K = kernel(x).to_dense()
    assert torch.allclose(K, net.kernel(x).nngp, rtol=1e-13, atol=0)
    (K * weights).sum().backward()
    _, grads = infnet.gp.kernel_gradients(net, x, wrt=["beta"])
    want = (weights * grads["beta"].nngp).sum() * torch.sigmoid(kernel.raw_beta.detach())
    assert torch.isclose(kernel.raw_beta.grad, want, rtol=1e-12)
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        infnet.gp.GPyTorchKernel("relu", depth=1, activation_param="beta")


def test_exact_gp_trains_and_matches_gp_inference():
    x, y = problem()
    m, likelihood = model(x, y)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, m)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.1)
    m.train()
    likelihood.train()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = -mll(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    w, b = float(m.covar_module.w_std.detach()), float(m.covar_module.b_std.detach())
    assert abs(w - 1.4) < 0.4 and abs(b - 0.5) < 0.4
    m.eval()
    likelihood.eval()
    xt = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), gpytorch.settings.fast_computations(False, False, False):
        pred = m(xt)
    net = infnet.fc("erf", 2, w_std=w, b_std=b)
    post = infnet.predict.gp_inference(net.kernel(x).nngp, y, ridge=float(likelihood.noise))
    mean = post.mean(net.kernel(xt, x).nngp)
    var = post.variance(net.kernel(xt, x).nngp, net.kernel(xt).nngp.diagonal())
    assert torch.allclose(pred.mean, mean.reshape(-1), rtol=1e-10, atol=1e-12)
    assert torch.allclose(pred.variance, var.reshape(-1), rtol=1e-10, atol=1e-12)


def test_errors(monkeypatch):
    with pytest.raises(ValueError, match="kind must be"):
        infnet.gp.GPyTorchKernel(kind="gram")
    with pytest.raises(ValueError, match=r"number > 1e-06"):
        infnet.gp.GPyTorchKernel(b_std=0.0)
    x, _ = problem(5)
    # an optimizer that drives the raw parameters far down (BoTorch's fit did, on a target the
    # kernel could not explain) stops at the floor, where the kernel still has gradients
    low = infnet.gp.GPyTorchKernel("erf", depth=2)
    with torch.no_grad():
        low.raw_w_std.fill_(-1000.0)
        low.raw_b_std.fill_(-1000.0)
    low(x).to_dense().sum().backward()
    assert float(low.w_std.detach()) == pytest.approx(1e-6) and torch.isfinite(low.raw_w_std.grad)
    kernel = infnet.gp.GPyTorchKernel()
    with pytest.raises(NotImplementedError, match="inputs"):
        kernel(x.clone().requires_grad_(True)).to_dense()
    monkeypatch.setitem(sys.modules, "gpytorch", None)
    monkeypatch.delitem(sys.modules, "infnet.gp.gpytorch_kernel", raising=False)
    with pytest.raises(ImportError, match=r"infnet\[gpytorch\]"):
        infnet.gp.GPyTorchKernel  # noqa: B018


def test_convolutional_architecture():
    """Rows as flattened 2 x 4 x 4 images of a ReLU CNN-GAP network: values, diagonal, and the
    raw parameters' gradients (the chain rule through softplus of the exact derivatives)."""
    conv = infnet.network.cnn("relu", 2, readout="gap", w_std=1.3, b_std=0.3)
    kernel = infnet.gp.GPyTorchKernel(architecture=conv, w_std=1.3, b_std=0.3,
                                      input_shape=(2, 4, 4))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 32, dtype=torch.float64, generator=g)
    images = x.reshape(5, 2, 4, 4)
    K = kernel(x).to_dense()
    assert torch.allclose(K, conv.kernel(images).nngp, rtol=1e-13, atol=0)
    assert torch.allclose(kernel(x, diag=True), torch.diagonal(K), rtol=1e-12, atol=0)
    weights = torch.randn(5, 5, dtype=torch.float64, generator=g)
    (kernel(x).to_dense() * weights).sum().backward()
    _, grads = infnet.gp.kernel_gradients(conv, images)
    for name in ("w_std", "b_std"):
        want = (weights * grads[name].nngp).sum() * torch.sigmoid(
            getattr(kernel, f"raw_{name}").detach())
        assert torch.isclose(getattr(kernel, f"raw_{name}").grad, want, rtol=1e-12), name
    with pytest.raises(ValueError, match="no bias"):
        infnet.gp.GPyTorchKernel(architecture=infnet.network.cnn("relu", 1, b_std=None))
