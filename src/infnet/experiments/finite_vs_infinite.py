"""Finite versus infinite width: trained finite networks against ``infnet.predict``.

Lee et al., "Wide neural networks of any depth evolve as linear models under gradient descent"
(NeurIPS 2019, arXiv 1902.06720): a network of width n trained by gradient descent on the MSE stays
within O(n^(-1/2)) of its linearization, whose outputs are, with the infinite-width NTK Theta,

    f_t(x) = f_0(x) + Theta(x, X) Theta^(-1) (I - exp(-eta Theta t / N)) (Y - f_0(X))   (eq. 9-11)

(``infnet.predict.gradient_descent_mse``: loss |f(X) - Y|^2 / (2N), N = Y.numel(); k full-batch
steps theta <- theta - eta grad L track the flow at t = k with ``learning_rate=eta``). Its mean over
initializations (f_0 = 0) is the infinite ensemble's prediction. Lee et al., "Finite versus
infinite neural networks: an empirical study" (NeurIPS 2020, arXiv 2007.15801): *centering*
(training and reporting f(theta, x) - f(theta_0, x), whose linearization starts at 0 and so is
the ensemble mean) and *ensembling* (averaging k networks) bring finite networks closer to it.

``compare`` trains networks built from a spec (``Network.finite``) over widths and seeds and keeps
their test outputs at given steps next to both references; ``Comparison.deviation`` gives the RMS
deviation (over test points, outputs and networks or ensembles) per width and step, and
``Comparison.slope`` its log-log slope against width (about -1/2). ``deviation_figure`` runs the
experiment on scikit-learn digits for ReLU and erf and draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..network.finite import build, sample_seeds
from ..predict import gradient_descent_mse

Tensor = torch.Tensor


def train(model: torch.nn.Module, x_train: Tensor, y_train: Tensor, x_test: Tensor, *,
          learning_rate: float, steps, center: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Full-batch gradient descent on L = |g(X) - Y|^2 / (2 Y.numel()) (plain steps, in place), with
    g = f, or g = f - f_0 when ``center`` (Lee et al. 2020). Returns the test outputs g(x_test) after
    each number of ``steps`` (a (len(steps), m, outputs) tensor), and f_0(X), f_0(x_test)."""
    steps = _check_steps(steps)
    params = [p for p in model.parameters() if p.requires_grad]
    y = y_train.reshape(y_train.shape[0], -1)
    with torch.no_grad():
        f0_train, f0_test = model(x_train), model(x_test)
    target = y + f0_train if center else y  # |f - f0 - Y| = |f - (Y + f0)|
    offset = f0_test if center else torch.zeros_like(f0_test)
    out, done = [], 0
    for k in steps:
        for _ in range(k - done):
            loss = 0.5 * torch.nn.functional.mse_loss(model(x_train), target)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.add_(g, alpha=-learning_rate)
        done = k
        with torch.no_grad():
            out.append(model(x_test) - offset)
    if not bool(torch.isfinite(out[-1]).all()):
        raise FloatingPointError(f"training diverged (learning rate {learning_rate:g} too large "
                                 "for this network)")
    return torch.stack(out), f0_train, f0_test


@dataclass(frozen=True)
class Comparison:
    """Test outputs of trained finite networks and of their infinite-width references.

    ``finite`` (widths, seeds, steps, m, outputs): the trained networks. References of the same
    shape: ``linearized``, the infinite-width prediction of ``infnet.predict`` (gradient flow at
    t = k) from each network's own f_0 (centered networks: f_0 = 0, the ensemble mean);
    ``stepped``, the same infinite-width network trained by the same k discrete steps, per NTK
    eigenvalue e a factor (1 - eta e / N)^k instead of exp(-eta e k / N). ``mean`` (steps, m,
    outputs): the infinite ensemble under the flow.
    ``discretization`` (steps,): the RMS of ``stepped - linearized``, the floor that the flow
    reference puts under the deviations.
    """

    widths: tuple[int, ...]
    steps: tuple[int, ...]
    learning_rate: float
    center: bool
    finite: Tensor
    linearized: Tensor
    stepped: Tensor
    mean: Tensor

    @property
    def discretization(self) -> Tensor:
        d = self.stepped - self.linearized
        return (d * d).mean(dim=(0, 1, 3, 4)).sqrt()

    def deviation(self, reference: str = "linearized", ensemble: int = 1) -> tuple[Tensor, Tensor]:
        """RMS of f_finite - f_reference over test points, outputs and ensembles, per (width, step),
        and its standard error (delta method over ensembles). ``reference``: "linearized", "stepped"
        or "mean"; ``ensemble``: networks averaged per ensemble (seeds grouped; the rest dropped)."""
        if reference not in ("linearized", "stepped", "mean"):
            raise ValueError(f"reference must be 'linearized', 'stepped' or 'mean', got {reference!r}")
        n_seeds = self.finite.shape[1]
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or not 1 <= ensemble <= n_seeds:
            raise ValueError(f"ensemble must be an integer in [1, {n_seeds}] (the seeds), got {ensemble!r}")
        groups = n_seeds // ensemble
        ref = self.mean.expand_as(self.finite) if reference == "mean" else getattr(self, reference)
        diff = (self.finite - ref)[:, :groups * ensemble]
        diff = diff.reshape(diff.shape[0], groups, ensemble, *diff.shape[2:]).mean(2)
        ms = (diff * diff).mean(dim=(3, 4))  # (widths, groups, steps)
        rms = ms.mean(1).sqrt()
        se = ms.std(1) / math.sqrt(groups) / (2 * rms) if groups > 1 else torch.full_like(rms, math.nan)
        return rms, se

    def slope(self, reference: str = "linearized", ensemble: int = 1, step: int | None = None) -> float:
        """Least-squares slope of log deviation against log width, at one ``step`` or (None) of the
        RMS over all steps. Lee et al. 2019 predict -1/2 against the linearized network."""
        rms, _ = self.deviation(reference, ensemble)
        y = (rms * rms).mean(1).sqrt() if step is None else rms[:, self.steps.index(step)]
        return fit_slope(self.widths, y)

    def table(self, ensemble: int = 1) -> dict:
        """The numbers as plain lists: widths, steps, deviations per (width, step) from the three
        references, their slopes, the discretization floor."""
        out = {"widths": list(self.widths), "steps": list(self.steps),
               "learning_rate": self.learning_rate, "center": self.center, "ensemble": ensemble,
               "discretization": self.discretization.tolist()}
        for ref in ("linearized", "stepped", "mean"):
            rms, se = self.deviation(ref, ensemble)
            out[f"to_{ref}"], out[f"to_{ref}_se"] = rms.tolist(), se.tolist()
            out[f"slope_to_{ref}"] = self.slope(ref, ensemble)
        return out


def fit_slope(widths, values) -> float:
    """Least-squares slope of log(values) against log(widths)."""
    x = np.log(np.asarray(widths, dtype=np.float64))
    y = np.log(np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=np.float64))
    return float(np.polyfit(x, y, 1)[0])


def compare(net, x_train, y_train, x_test, *, widths, n_seeds: int = 4, steps=(20, 100),
            learning_rate: float | None = None, center: bool = False, seed: int = 0) -> Comparison:
    """Train ``n_seeds`` finite networks of ``net`` per width by full-batch gradient descent and
    keep their test outputs after each of ``steps`` with the references (module docstring).

    Data follow x_train's dtype (float64 for non-floating input) and device; ``y_train`` is (n,)
    or (n, outputs), one network output per target column. ``learning_rate`` None: N / lambda_max
    of the infinite NTK of the training set (N = y_train.numel()), half the largest stable rate
    2 N / lambda_max of the linearized dynamics.
    """
    x_train = torch.as_tensor(x_train)
    x_train = x_train if x_train.is_floating_point() else x_train.to(torch.float64)
    x_test = torch.as_tensor(x_test).to(x_train)
    y = torch.as_tensor(y_train).to(x_train)
    y = y.reshape(y.shape[0], -1)
    steps = _check_steps(steps)
    widths = tuple(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths!r}")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    build(net, 1, in_features=x_train.shape[1])  # spec errors before any kernel is computed
    k_train = net.kernel(x_train, get="ntk").ntk.to(x_train)
    k_cross = net.kernel(x_test, x_train, get="ntk").ntk.to(x_train)
    values, vectors = torch.linalg.eigh(k_train)
    n = y.numel()
    if learning_rate is None:
        learning_rate = n / float(values[-1])
    learning_rate = float(learning_rate)
    if not 0 < learning_rate * float(values[-1]) / n < 2:
        raise ValueError(f"learning_rate {learning_rate:g} is outside (0, 2 N / lambda_max) = "
                         f"(0, {2 * n / float(values[-1]):.4g}): discrete steps would not track the flow")
    flow = gradient_descent_mse(k_train, y, learning_rate=learning_rate)
    mean = torch.stack([flow.predict(k_cross, k) for k in steps])
    discrete = _discrete_transfer(values, vectors, learning_rate / n, steps)
    finite, linearized, stepped = [], [], []
    for width in widths:
        outs = []
        for s in sample_seeds((seed, width), n_seeds):
            model = build(net, width, in_features=x_train.shape[1], outputs=y.shape[1], seed=s,
                          dtype=x_train.dtype, device=x_train.device)
            out, f0_train, f0_test = train(model, x_train, y, x_test, learning_rate=learning_rate,
                                           steps=steps, center=center)
            if center:
                f0_train, f0_test = torch.zeros_like(f0_train), torch.zeros_like(f0_test)
            lin = torch.stack([flow.predict(k_cross, k, f0_train=f0_train, f0_test=f0_test)
                               for k in steps])
            outs.append((out, lin, f0_test + k_cross @ (discrete @ (y - f0_train))))
        for store, part in zip((finite, linearized, stepped), zip(*outs, strict=True), strict=True):
            store.append(torch.stack(part))
    return Comparison(widths, steps, learning_rate, center, torch.stack(finite),
                      torch.stack(linearized), torch.stack(stepped), mean)


def _discrete_transfer(values: Tensor, vectors: Tensor, rate: float, steps) -> Tensor:
    """(steps, n, n): V diag(h_k(e)) V^T with h_k(e) = (1 - (1 - rate e)^k) / e (rate k at e = 0),
    so that Theta(x, X) h_k (Y - f_0(X)) is k gradient steps of the linearized network."""
    e = values.clamp(min=0)
    x = rate * e
    out = []
    for k in steps:  # 1 - (1 - x)^k without cancellation for small x
        gap = torch.where(x < 0.5, -torch.expm1(k * torch.log1p(-x.clamp(max=0.5))), 1 - (1 - x) ** k)
        h = torch.where(e > 0, gap / e.clamp(min=1e-300), torch.full_like(e, rate * k))
        out.append(vectors @ (h[:, None] * vectors.T))
    return torch.stack(out)


def _check_steps(steps) -> tuple[int, ...]:
    steps = tuple(steps)
    if not steps or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in steps) \
            or list(steps) != sorted(set(steps)):
        raise ValueError(f"steps must be increasing positive integers, got {steps!r}")
    return steps


def digits_problem(n_train: int = 100, n_test: int = 50, seed: int = 0):
    """scikit-learn digits: rows scaled to |x|^2 = d (x.x/d = 1, so pre-activations have unit
    variance scale), targets one-hot minus 1/10 (Lee et al. 2020). Returns float64 tensors
    x_train, y_train (n_train, 10), x_test."""
    from ..data import digits_sphere, train_test

    x, labels = digits_sphere(n_train + n_test, seed=seed)
    x = x * math.sqrt(x.shape[1])
    x_tr, x_te, l_tr, _ = train_test(x, labels, test_size=n_test, seed=seed)
    y = np.eye(10)[l_tr] - 0.1
    return torch.as_tensor(x_tr), torch.as_tensor(y), torch.as_tensor(x_te)


def deviation_figure(path=None, *, activations=("relu", "erf"), depth: int = 1,
                     widths=(64, 256, 1024, 4096), n_seeds: int = 4, steps=(20, 100),
                     n_train: int = 100, n_test: int = 50, seed: int = 0) -> dict:
    """Deviation from the infinite-width predictions against width, on digits (``digits_problem``),
    for ``fc(act, depth, w_std=sqrt(2), b_std=0.1)`` of each activation: per network against its
    own linearization, centered networks and centered ensembles of ``n_seeds`` against the
    infinite ensemble mean, uncentered against the mean; log-log, with a width^(-1/2) line.
    Writes the figure to ``path`` (any format matplotlib knows) when given; returns the numbers
    ({activation: {"uncentered": table, "centered": table, "centered_ensemble": table}})."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..network import fc

    x_train, y_train, x_test = digits_problem(n_train, n_test, seed)
    fig = Figure(figsize=(5 * len(activations), 4), layout="constrained")
    FigureCanvasAgg(fig)
    results = {}
    for i, name in enumerate(activations):
        net = fc(name, depth, w_std=math.sqrt(2), b_std=0.1)
        runs = {c: compare(net, x_train, y_train, x_test, widths=widths, n_seeds=n_seeds, steps=steps,
                           seed=seed, center=c) for c in (False, True)}
        results[name] = {"uncentered": runs[False].table(), "centered": runs[True].table(),
                         "centered_ensemble": runs[True].table(ensemble=n_seeds)}
        ax = fig.add_subplot(1, len(activations), i + 1)
        curves = [(runs[False], "linearized", 1, "f vs its linearization"),
                  (runs[True], "mean", 1, "centered vs ensemble mean"),
                  (runs[True], "mean", n_seeds, f"centered, ensemble of {n_seeds}, vs mean"),
                  (runs[False], "mean", 1, "uncentered vs ensemble mean")]
        for run, ref, k, label in curves:
            rms, _ = run.deviation(ref, k)
            total = (rms * rms).mean(1).sqrt()
            ax.plot(widths, total.tolist(), "o-", label=f"{label} ({fit_slope(widths, total):+.2f})")
        first = float((runs[False].deviation()[0] ** 2).mean(1).sqrt()[0])
        ax.plot(widths, [first * math.sqrt(widths[0] / w) for w in widths], "k--", label="width^(-1/2)")
        ax.set(xscale="log", yscale="log", xlabel="width", ylabel="RMS deviation of test outputs",
               title=f"{name}, depth {depth}, steps {list(steps)}")
        ax.legend(fontsize=7)
    if path is not None:
        fig.savefig(path)
    return results
