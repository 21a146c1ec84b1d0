"""Empirical NTK of PyTorch modules (``infnet.empirical``).

The expected values come from outside the code under test:

1. the three implementations (Jacobian contraction, NTK-vector products, structured derivatives)
   against each other, and all against a brute-force J J^T from
   ``torch.autograd.functional.jacobian`` over one flattened parameter vector;
2. wide networks in NTK parameterization, written out here, whose empirical NTK averaged over
   seeds must match ``infnet.fc(...).kernel(x).ntk`` within the Monte Carlo error of the seeds;
3. error messages for models and inputs that have no NTK (random or batch-dependent modules,
   wrong shapes, dtypes, no trainable parameters, non-floating outputs, nan);
4. blocks (``batch_size`` and the memory budget) against one block; the model left untouched.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import infnet
from infnet.empirical import Elementwise, empirical_ntk, empirical_ntk_fn
from infnet.empirical import ntk as ntk_module
from infnet.empirical.checks import Census

F64 = torch.float64
METHODS = ("jacobian", "ntvp", "structured")
# torch's first forward-mode call scripts its jvp decompositions (torch.jit.script, deprecated)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def mlp(d: int, widths: list[int], o: int, act, bias: bool = True, seed: int = 0) -> nn.Sequential:
    """nn.Sequential of Linear and ``act()`` in float64, default torch initialization."""
    torch.manual_seed(seed)
    layers, n_in = [], d
    for w in widths:
        layers += [nn.Linear(n_in, w, bias=bias), act()]
        n_in = w
    return nn.Sequential(*layers, nn.Linear(n_in, o, bias=bias)).to(F64)


def swish():
    return Elementwise(infnet.activation("swish"))


def brute_force_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """(N1, N2, O, O): J J^T with J from autograd over one flat vector of all parameters."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])

    def outputs(x):
        def f(theta):
            params, i = {}, 0
            for k, p in named:
                params[k] = theta[i:i + p.numel()].reshape(p.shape)
                i += p.numel()
            return functional_call(model, params, (x,)).reshape(x.shape[0], -1)

        return torch.autograd.functional.jacobian(f, flat)  # (N, O, P)

    j1, j2 = outputs(x1), outputs(x2)
    return torch.einsum("nap,mbp->nmab", j1, j2)


def all_methods(model, x1, x2=None, trace=True, methods=METHODS, **kw):
    return {m: empirical_ntk(model, x1, x2, method=m, trace=trace, **kw) for m in methods}


def assert_agree(kernels: dict, tol: float = 1e-10):
    ref_name, ref = next(iter(kernels.items()))
    scale = float(ref.abs().max())
    for name, k in kernels.items():
        assert k.shape == ref.shape, (name, k.shape, ref.shape)
        err = float((k - ref).abs().max())
        assert err <= tol * max(scale, 1.0), f"{name} vs {ref_name}: {err:.3e} (scale {scale:.3e})"


# ---- 1. the implementations agree ------------------------------------------------------------
def relu_inplace():
    return nn.ReLU(inplace=True)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, relu_inplace, nn.GELU, swish],
                         ids=["tanh", "relu", "relu_inplace", "gelu", "swish"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("o", [1, 3])
def test_methods_agree_on_mlps(act, bias, o):
    model = mlp(5, [7, 6], o, act, bias)
    torch.manual_seed(1)
    x1, x2 = torch.randn(4, 5, dtype=F64), torch.randn(3, 5, dtype=F64)
    for trace in (True, False):
        for second in (None, x2):
            kernels = all_methods(model, x1, second, trace)
            kernels["auto"] = empirical_ntk(model, x1, second, trace=trace)
            assert_agree(kernels)
            n2 = 4 if second is None else 3
            assert kernels["auto"].shape == ((4, n2) if trace else (4, n2, o, o))


@pytest.mark.parametrize("bias", [True, False])
def test_brute_force_jacobian(bias):
    model = mlp(3, [4], 2, nn.Tanh, bias)
    torch.manual_seed(2)
    x1, x2 = torch.randn(3, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    want = brute_force_ntk(model, x1, x2)
    full = all_methods(model, x1, x2, trace=False)
    traced = all_methods(model, x1, x2, trace=True)
    assert_agree({"brute force": want, **full})
    assert_agree({"brute force": want.diagonal(dim1=2, dim2=3).mean(-1), **traced})
    same = all_methods(model, x1, None, trace=False)
    assert_agree({"brute force": brute_force_ntk(model, x1, x1), **same})


def conv_net(channels_in: int = 2) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(channels_in, 3, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 2)).to(F64)


def test_conv_net_jacobian_and_ntvp_agree():
    model = conv_net()
    torch.manual_seed(4)
    x1, x2 = torch.randn(3, 2, 6, 6, dtype=F64), torch.randn(2, 2, 6, 6, dtype=F64)
    for trace in (True, False):
        for second in (None, x2):
            kernels = all_methods(model, x1, second, trace, methods=("jacobian", "ntvp"))
            kernels["auto"] = empirical_ntk(model, x1, second, trace=trace)
            assert_agree(kernels)
    assert_agree({"brute force": brute_force_ntk(model, x1, x2),
                  "ntvp": empirical_ntk(model, x1, x2, method="ntvp", trace=False)})
    with pytest.raises(ValueError, match="structured"):
        empirical_ntk(model, x1, method="structured")


def test_kernel_properties():
    """Symmetric, positive semi-definite, trace = mean of the diagonal over outputs."""
    model = mlp(4, [16], 3, nn.GELU)
    torch.manual_seed(5)
    x = torch.randn(6, 4, dtype=F64)
    full = empirical_ntk(model, x, trace=False)
    assert torch.allclose(full, full.permute(1, 0, 3, 2), atol=1e-13)
    assert torch.linalg.eigvalsh(full.permute(0, 2, 1, 3).reshape(18, 18)).min() > -1e-10
    assert torch.allclose(empirical_ntk(model, x), full.diagonal(dim1=2, dim2=3).mean(-1), atol=1e-13)


def test_outputs_shapes_and_function_form():
    """Outputs (N,) have O = 1, outputs (N, 2, 3) are flattened to O = 6; empirical_ntk_fn."""
    torch.manual_seed(6)
    x = torch.randn(3, 4, dtype=F64)

    class Vector(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 6).to(F64)

        def forward(self, x):
            return torch.tanh(self.lin(x)).reshape(-1, 2, 3)

    model = Vector()
    full = empirical_ntk(model, x, trace=False)
    assert full.shape == (3, 3, 6, 6)
    assert_agree({"brute force": brute_force_ntk(model, x, x), "auto": full})
    scalar = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)).to(F64)
    assert empirical_ntk(scalar, x, method="jacobian").shape == (3, 3)
    params = {k: p for k, p in model.named_parameters()}
    for method in ("jacobian", "ntvp", "auto"):
        got = empirical_ntk_fn(lambda p, xb: functional_call(model, p, (xb,)), params, x,
                               method=method, trace=False)
        assert_agree({"module": full, "fn": got})


def test_frozen_parameters_and_no_mutation():
    """Only parameters with requires_grad count; the model's parameters, buffers, mode unchanged."""
    model = mlp(5, [8, 8], 2, nn.ReLU)
    model[0].weight.requires_grad_(False)
    model[2].bias.requires_grad_(False)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    x1, x2 = torch.randn(4, 5, dtype=F64), torch.randn(2, 5, dtype=F64)
    kernels = all_methods(model, x1, x2, trace=False)
    assert_agree({"brute force": brute_force_ntk(model, x1, x2), **kernels})
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_float32_follows_dtype():
    model = mlp(5, [8], 2, nn.Tanh).float()
    x = torch.randn(3, 5)
    kernels = all_methods(model, x)
    assert all(k.dtype == torch.float32 for k in kernels.values())
    assert_agree(kernels, tol=1e-5)


def test_dropout_in_eval_mode_is_identity():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).to(F64).eval()
    plain = nn.Sequential(model[0], model[1], model[3])
    x = torch.randn(3, 4, dtype=F64)
    assert_agree({"plain": empirical_ntk(plain, x, method="jacobian"), **all_methods(model, x)})


def test_auto_choice():
    """Structured for MLPs; otherwise the FLOP estimates of docs/theory/finite-width.md#choosing-a-method."""
    p = 10**6
    dense = Census(outputs=8, flops=2 * p, entries=10**4, dtype=F64)  # [FP] ~ 2P: NTVP cheaper
    assert ntk_module.choose_method(dense, 16, 16, p, trace=False) == "ntvp"
    conv = Census(outputs=1, flops=1000 * p, entries=10**6, dtype=F64)  # [FP] >> P: JC cheaper
    assert ntk_module.choose_method(conv, 16, 16, p, trace=True) == "jacobian"
    used = []

    class Spy(ntk_module.StructuredDerivatives):
        def __init__(self, layers):
            used.append(len(layers))
            super().__init__(layers)

    model = nn.Sequential(mlp(4, [8], 2, nn.ReLU), nn.Sequential(nn.Tanh(), nn.Linear(2, 3).to(F64)))
    x = torch.randn(3, 4, dtype=F64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ntk_module, "StructuredDerivatives", Spy)
        theta = empirical_ntk(model, x, trace=False)
        assert used == [5]  # nested Sequentials flattened
        model[1][1].register_forward_hook(lambda m, i, o: 2 * o)  # hooks: not a plain MLP
        hooked = empirical_ntk(model, x, trace=False)
        assert used == [5]
    assert_agree({"brute force": brute_force_ntk(model, x, x), "hooked": hooked})
    assert not torch.allclose(theta, hooked)


# ---- 2. wide networks at initialization: the infinite-width NTK ---------------------------------
class NTKParamMLP(nn.Module):
    """ReLU MLP in NTK parameterization: h = w_std W x / sqrt(n_in) + b_std b, W, b ~ N(0, 1)."""

    def __init__(self, d: int, width: int, depth: int, w_std: float, b_std: float | None, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dims = [d] + [width] * depth + [1]
        self.w_std, self.b_std = w_std, b_std
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(o, i, generator=g, dtype=F64))
                                        for i, o in zip(dims[:-1], dims[1:], strict=True))
        self.biases = None if b_std is None else nn.ParameterList(
            nn.Parameter(torch.randn(o, generator=g, dtype=F64)) for o in dims[1:])

    def forward(self, x):
        for i, w in enumerate(self.weights):
            x = self.w_std * x @ w.T / math.sqrt(w.shape[1])
            if self.biases is not None:
                x = x + self.b_std * self.biases[i]
            if i < len(self.weights) - 1:
                x = torch.relu(x)
        return x


@pytest.mark.parametrize("b_std", [None, 0.5])
def test_wide_network_matches_infinite_ntk(b_std):
    d, width, depth, seeds = 6, 2048, 2, 20
    torch.manual_seed(8)
    x = torch.randn(3, d, dtype=F64)
    x = x / x.norm(dim=1, keepdim=True)
    x[2] = x[0]  # a pair at correlation 1 (the diagonal of the kernel)
    exact = infnet.fc("relu", depth=depth, w_std=2**0.5, b_std=b_std or 0.0).kernel(x).ntk
    samples = torch.stack([empirical_ntk(NTKParamMLP(d, width, depth, 2**0.5, b_std, seed), x)
                           for seed in range(seeds)])
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(seeds)
    assert (se > 0).all()
    assert ((mean - exact).abs() <= 5 * se).all(), f"mean {mean}\nexact {exact}\nse {se}"
    assert (se < 0.05 * exact.abs().max()).all()  # the check has power: the spread is small


# ---- 3. bad input ------------------------------------------------------------------------------
def test_batchnorm_in_training_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).to(F64)
    x = torch.randn(5, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"module '1' \(BatchNorm1d\) is in training mode.*model\.eval"):
        empirical_ntk(model, x)
    model.eval()
    assert_agree(all_methods(model, x, methods=("jacobian", "ntvp")))
    no_stats = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False)).to(F64).eval()
    with pytest.raises(ValueError, match="track_running_stats=False"):
        empirical_ntk(no_stats, x)


def test_dropout_in_training_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1)).to(F64)
    with pytest.raises(ValueError, match=r"module '2' \(Dropout\) is in training mode.*model\.eval"):
        empirical_ntk(model, torch.randn(3, 4, dtype=F64))


def test_random_forward_pass():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2).to(F64)

        def forward(self, x):
            return F.dropout(self.lin(x), 0.5, training=True)

    with pytest.raises(ValueError, match="different outputs on the same input"):
        empirical_ntk(Noisy(), torch.randn(3, 4, dtype=F64))


@pytest.mark.parametrize("n", [1, 3])
def test_outputs_that_depend_on_the_batch_are_refused(n):
    """y - y.mean(0) couples the samples: the empirical NTK would be 0 (its docstring promises
    an error); one sample alone is compared with itself beside another."""
    class Centered(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2).to(F64)

        def forward(self, x):
            y = self.lin(x)
            return y - y.mean(0)

    with pytest.raises(ValueError, match="changes with the other samples of the batch"):
        empirical_ntk(Centered(), torch.randn(n, 4, dtype=F64))


def test_wrong_shapes():
    x = torch.randn(3, 4, dtype=F64)
    model = mlp(5, [8], 1, nn.ReLU)
    for method in ("auto", "structured"):
        with pytest.raises(ValueError, match=r"shape \(3, 4\).*expects inputs of shape \(N, 5\)"):
            empirical_ntk(model, x, method=method)
    with pytest.raises(ValueError, match=r"failed on inputs of shape \(1, 4\).*shape \(3, 4\)"):
        empirical_ntk(model, x, method="jacobian")
    with pytest.raises(ValueError, match=r"failed on inputs of shape \(1, 3, 6, 6\)"):
        empirical_ntk(conv_net(2), torch.randn(2, 3, 6, 6, dtype=F64))
    with pytest.raises(ValueError, match=r"same shape per sample.*\(3, 5\).*\(2, 4\)"):
        empirical_ntk(model, torch.randn(3, 5, dtype=F64), torch.randn(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="at least one sample"):
        empirical_ntk(model, torch.randn(0, 5, dtype=F64))


def test_dtypes_and_devices():
    model = mlp(4, [8], 1, nn.ReLU)
    x = torch.randn(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="same dtype and device.*float64.*float32"):
        empirical_ntk(model, x, x.float())
    with pytest.raises(ValueError, match=r"is torch.float64 but the inputs are torch.float32"):
        empirical_ntk(model, x.float())
    with pytest.raises(ValueError, match="nan or inf"):
        empirical_ntk(model, torch.full((2, 4), math.nan, dtype=F64))


def test_no_trainable_parameters_and_bad_outputs():
    x = torch.randn(3, 4, dtype=F64)
    frozen = mlp(4, [8], 1, nn.ReLU).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad=True"):
        empirical_ntk(frozen, x)

    class Argmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3).to(F64)

        def forward(self, x):
            return self.lin(x).argmax(-1)

    with pytest.raises(ValueError, match="dtype torch.int64"):
        empirical_ntk(Argmax(), x)

    class Pair(Argmax):
        def forward(self, x):
            return self.lin(x), x

    with pytest.raises(ValueError, match="one tensor of outputs, got tuple"):
        empirical_ntk(Pair(), x)

    class Log(Argmax):
        def forward(self, x):
            return torch.log(self.lin(x) - 100.0)  # nan

    with pytest.raises(FloatingPointError, match="outputs on the first sample of x1 have nan"):
        empirical_ntk(Log(), x, method="jacobian")

    class NanGradient(Argmax):
        def forward(self, x):  # finite outputs, nan derivatives (the torch.where trap)
            y = self.lin(x)
            return torch.where(y > 100.0, torch.sqrt(y - 200.0), y)

    for method in ("jacobian", "ntvp"):
        with pytest.raises(FloatingPointError, match=f"method='{method}'.*nan or inf"):
            empirical_ntk(NanGradient(), x, method=method)


def test_bad_arguments():
    model = mlp(4, [8], 1, nn.ReLU)
    x = torch.randn(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="method must be one of"):
        empirical_ntk(model, x, method="fast")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        empirical_ntk(model, x, batch_size=0)
    with pytest.raises(TypeError, match="nn.Module"):
        empirical_ntk(lambda x: x, x)
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        empirical_ntk(model, [[1.0, 2.0, 3.0, 4.0]])


# ---- 4. blocks --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["jacobian", "ntvp", "structured"])
def test_batching_matches_one_block(method, monkeypatch):
    model = mlp(5, [9, 7], 3, nn.Tanh)
    torch.manual_seed(9)
    x1, x2 = torch.randn(7, 5, dtype=F64), torch.randn(5, 5, dtype=F64)
    for trace in (True, False):
        for second in (None, x2):
            one = empirical_ntk(model, x1, second, method=method, trace=trace, batch_size=100)
            blocks = {f"batch_size={b}": empirical_ntk(model, x1, second, method=method, trace=trace,
                                                       batch_size=b) for b in (1, 2, 3)}
            assert_agree({"one block": one, **blocks}, tol=1e-13)
    monkeypatch.setattr(ntk_module, "BUDGET", 2000)  # bytes: a few samples per block
    seen, blocked = [], ntk_module.blocked

    def spy(impl, x1, x2, trace, sizes, *rest):
        seen.append(sizes)
        return blocked(impl, x1, x2, trace, sizes, *rest)

    monkeypatch.setattr(ntk_module, "blocked", spy)
    for second in (None, x2):
        got = empirical_ntk(model, x1, second, method=method, trace=False)
        want = empirical_ntk(model, x1, second, method=method, trace=False, batch_size=100)
        assert_agree({"one block": want, "budget": got}, tol=1e-13)
    assert max(seen[0]) < 5 and max(seen[2]) < 5  # the default cut the inputs into blocks


def test_integer_inputs():
    """Token inputs (an embedding model): the NTK over the embedding table and the readout."""
    torch.manual_seed(10)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).to(F64)
    x1, x2 = torch.randint(0, 10, (5, 3)), torch.randint(0, 10, (2, 3))
    kernels = all_methods(model, x1, x2, trace=False, methods=("jacobian", "ntvp"))
    assert_agree({"brute force": brute_force_ntk(model, x1, x2), **kernels})
