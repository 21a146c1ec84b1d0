"""A small-scale reproduction of Lee et al. 2020 on an IDX folder of digits (``infnet lee2020``).

Lee, Schoenholz, Pennington, Adlam, Xiao, Novak & Sohl-Dickstein, "Finite versus infinite
neural networks: an empirical study", NeurIPS 2020, arXiv 2007.15801. For the architectures FC,
LCN-VEC (locally connected, flattened readout), CNN-VEC and CNN-GAP (global average pooling) with
ReLU, W_std = sqrt(2): the infinitely wide network's NNGP and NTK regression on zero-mean one-hot
targets (one-hot minus 1/C), with and without regularized ZCA whitening, next to finite networks
of the same specification trained by full-batch gradient descent on the MSE at a few widths.

The choices that keep the default run within a few minutes on two CPU cores (module ``run``):

- images 2 x 2 average-pooled to 14 x 14 (``pool``); the data split 50/50 stratified
  (``infnet.data.load_dataset``), then stratified subsets of ``n_train`` / ``n_test``;
- FC, LCN-VEC and CNN-VEC kernels on ``n_train`` x ``n_test`` (a CNN-VEC or LCN-VEC kernel costs
  O(H W) per pair of images, about 10^5 pairs per second here); every architecture's kernels and
  the finite networks on a balanced subset of ``n_small`` training and test images: a CNN-GAP
  kernel keeps the covariance of every pair of positions, (H W)^2 = 38416 entries per pair of
  images and layer at 14 x 14, about 500 pairs of images per second at depth 2 (28 x 28 would
  cost 16 times more), so it is computed on the subset only;
- finite networks in float32 (CPU convolutions are several times faster than in float64), for
  ``steps`` full-batch steps at learning rate N / lambda_max of the NTK of the subset (N the
  number of target entries; ``experiments.finite_vs_infinite`` conventions), compared with the
  infinitely wide network after the same steps (row "ntk_t") as well as at t = inf: a few
  hundred steps do not converge (the NTK of CNN-GAP, whose largest eigenvalue dwarfs the rest,
  least of all). The finite nets are centered (they train f - f_0, Lee et al. 2020), so that
  they estimate the mean over initializations that the kernels predict;
- torch's threads as set (``threads`` to change them for the run): on a quiet machine the
  second core halves the kernels' time, but when other processes share the cores, threads
  that wait for each other at every elementwise pass can lose tenfold: ``threads=1`` then.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ...core.checks import check_depth
from ...core.files import check_writable, make_folder, write_atomic
from ...network import architecture
from .data import Images, load_images, positive_int, zca_whiten
from .models import finite_rows, kernel_rows
from .report import figure, format_table, write_csv

#: the architectures of the comparison, as ``infnet.network.architecture`` names them
ARCHITECTURES = ("fc", "lcn-vec", "cnn-vec", "cnn-gap")
#: architectures whose kernels are computed on the subset only (O((H W)^2) per pair of images)
SUBSET_ONLY = ("cnn-gap",)


@dataclass(frozen=True)
class Lee2020Result:
    """The numbers of a ``run``: ``rows`` (the rows of results.csv, as dicts), the paths
    written (``csv``, ``figure``, ``settings_path``; None without ``out_dir``), the wall time
    ``seconds`` and the ``settings``.

    Examples
    --------
    See ``run``.
    """

    rows: list
    seconds: float
    settings: dict
    csv: Path | None = None
    figure: Path | None = None
    settings_path: Path | None = None

    def table(self) -> str:
        """The rows as an aligned text table."""
        return format_table(self.rows)

    def accuracy(self, architecture: str, model: str, preprocessing: str = "none",
                 width="inf", n_train: int | None = None) -> float:
        """The test accuracy of one row (``n_train`` None: the largest data size)."""
        found = [r for r in self.rows if (r["architecture"], r["model"], r["preprocessing"])
                 == (architecture, model, preprocessing) and str(r["width"]) == str(width)
                 and (n_train is None or r["n_train"] == n_train)]
        if not found:
            raise KeyError(f"no row for {architecture} {model} width {width} {preprocessing}")
        return max(found, key=lambda r: r["n_train"])["accuracy"]


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _widths(values, name: str) -> tuple[int, ...]:
    values = tuple(values)
    for v in values:
        positive_int(v, f"every one of {name}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} repeats a width: {values!r}")
    return tuple(int(v) for v in sorted(values))


def _fraction(value, name: str, *, upper: float = math.inf) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 <= value < upper:
        raise ValueError(f"{name} must be a finite number in [0, {upper:g}), got {value!r}")
    return float(value)


def run(data_dir, *, n_train: int = 1000, n_test: int = 1000, n_small: int = 100,
        widths=(4, 16, 64), fc_widths=(256, 1024, 4096), seeds: int = 2, steps: int = 100,
        depth: int = 2, fc_depth: int = 1, architectures=ARCHITECTURES, pool: int = 2,
        zca: float | None = 0.1, finite_zca: bool = False, ridge: float = 1e-4,
        b_std: float = 0.1, rate: float = 1.0, center: bool = True, seed: int = 0,
        threads: int | None = None, out_dir=None, log=None) -> Lee2020Result:
    """Infinite against finite networks on an IDX folder of digits (module docstring).

    Parameters
    ----------
    data_dir : str or os.PathLike
        A folder holding one ``*images*idx3*`` and one ``*labels*idx1*`` file (gzipped or not);
        split 50/50 stratified with ``seed``.
    n_train, n_test : int
        Stratified subsets of each half for the FC, LCN-VEC and CNN-VEC kernels.
    n_small : int
        The balanced subset (training and test, <= n_train, n_test) for every architecture's
        kernels (CNN-GAP's only), the NTK at t = ``steps`` and the finite networks.
    widths : sequence of int
        Channels of the finite convolutional networks (empty: no finite conv nets).
    fc_widths : sequence of int
        Hidden widths of the finite FC networks (empty: none).
    seeds : int
        Finite networks per width.
    steps : int
        Full-batch gradient-descent steps of the finite networks.
    depth : int
        Convolutional layers of LCN-VEC, CNN-VEC and CNN-GAP.
    fc_depth : int
        Hidden layers of FC.
    architectures : sequence of str
        A subset of ``ARCHITECTURES``.
    pool : int
        Images are ``pool`` x ``pool`` average-pooled (1: full size).
    zca : float or None
        The regularization of ZCA whitening (relative to the mean eigenvalue, ``infnet.data.
        ZCAWhitening``, fit on the ``n_train`` training images); None: no ZCA rows.
    finite_zca : bool
        Train finite networks on the whitened images too (twice the finite work).
    ridge : float
        The kernels' diagonal regularizer, relative to the mean of their diagonal.
    b_std : float
        The bias std of every layer (W_std is sqrt(2)).
    rate : float
        The learning rate in units of N / lambda_max (stable below 2).
    center : bool
        Train and report f - f_0 (centering, Lee et al. 2020): the finite nets then estimate
        the mean over initializations that the kernels predict. False: standard training,
        whose random initial function f_0 a hundred steps do not train away (10 to 15 points
        of accuracy lower here).
    seed : int
        Seed of the split, the subsets and the networks.
    threads : int or None
        torch threads during the run (restored after); None: leave torch's setting.
    out_dir : str or os.PathLike, optional
        Where results.csv, lee2020.png and settings.json are written (created if needed,
        checked before anything is computed); None: nothing is written.
    log : callable, optional
        Called with one line of progress per step (e.g. ``print``).

    Returns
    -------
    Lee2020Result
        The rows, the paths written, the wall time and the settings.

    Raises
    ------
    FileNotFoundError
        ``data_dir`` is not a folder holding an IDX pair.
    ValueError
        A size, width, seed count, step count or depth that is not a positive integer,
        ``n_small`` above ``n_train`` or ``n_test``, an unknown architecture, a ``ridge``,
        ``zca`` or ``b_std`` that is not a finite number >= 0, a ``rate`` outside (0, 2), a
        ``pool`` that does not divide the images, or sizes the data cannot give.
    OSError
        ``out_dir`` cannot be created or written (``core.files.WriteError``).

    Examples
    --------
    >>> import os
    >>> def idx(a):  # an IDX file's bytes: magic 00 00 08 (uint8) ndim, big-endian shape, values
    ...     return bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    >>> labels = np.arange(40, dtype=np.uint8) % 2
    >>> images = (np.random.default_rng(0).random((40, 8, 8)) * 60).astype(np.uint8)
    >>> images[labels == 1, 2:6, 3:5] = 255  # class 1: a bright bar
    >>> os.mkdir("tiny")
    >>> _ = open("tiny/images-idx3-ubyte", "wb").write(idx(images))
    >>> _ = open("tiny/labels-idx1-ubyte", "wb").write(idx(labels))
    >>> from infnet.experiments.lee2020 import run
    >>> result = run("tiny", n_train=20, n_test=20, n_small=10, widths=(4,), fc_widths=(16,),
    ...              seeds=1, steps=20, architectures=("fc", "cnn-vec"), out_dir="out")
    >>> result.accuracy("cnn-vec", "ntk")
    1.0
    >>> sorted(os.listdir("out"))
    ['lee2020.png', 'results.csv', 'settings.json']
    """
    start = time.perf_counter()
    say = log or (lambda line: None)
    n_train, n_test, n_small = (positive_int(v, k) for k, v in
                                (("n_train", n_train), ("n_test", n_test), ("n_small", n_small)))
    if n_small > min(n_train, n_test):
        raise ValueError(f"n_small={n_small} must be at most n_train={n_train} and n_test={n_test}")
    widths, fc_widths = _widths(widths, "widths"), _widths(fc_widths, "fc_widths")
    seeds, steps, pool = (positive_int(v, k) for k, v in
                          (("seeds", seeds), ("steps", steps), ("pool", pool)))
    depth, fc_depth = check_depth(depth), check_depth(fc_depth, name="fc_depth")
    architectures = tuple(architectures)
    unknown = [a for a in architectures if a not in ARCHITECTURES]
    if not architectures or unknown or len(set(architectures)) != len(architectures):
        raise ValueError(f"architectures must be distinct names among {ARCHITECTURES}, got "
                         f"{architectures!r}")
    ridge, b_std = _fraction(ridge, "ridge"), _fraction(b_std, "b_std")
    zca = None if zca is None else _fraction(zca, "zca")
    rate = _fraction(rate, "rate", upper=2.0)
    if rate == 0:
        raise ValueError("rate must be > 0 (the learning rate in units of N / lambda_max)")
    if threads is not None:
        threads = positive_int(threads, "threads")
    paths = None
    if out_dir is not None:
        folder = make_folder(out_dir, "out_dir")
        paths = tuple(check_writable(folder / name, "out_dir")
                      for name in ("results.csv", "lee2020.png", "settings.json"))
    settings = {"data_dir": str(data_dir), "n_train": n_train, "n_test": n_test,
                "n_small": n_small, "widths": list(widths), "fc_widths": list(fc_widths),
                "seeds": seeds, "steps": steps, "depth": depth, "fc_depth": fc_depth,
                "architectures": list(architectures), "pool": pool, "zca": zca,
                "finite_zca": finite_zca, "ridge": ridge, "w_std": 2**0.5, "b_std": b_std,
                "rate": rate, "center": center, "seed": seed, "threads": threads,
                "finite_dtype": "float32", "activation": "relu"}
    rows: list[dict] = []
    with _threads(threads):
        base = load_images(data_dir, n_train=n_train, n_test=n_test, pool=pool, seed=seed)
        image = "x".join(str(s) for s in base.x_train.shape[2:])
        say(f"data: {n_train} training and {n_test} test images of {image} pixels, "
            f"{base.classes} classes; subset of {n_small} + {n_small}")
        sets: dict[str, Images] = {"none": base}
        if zca is not None:
            sets["zca"] = zca_whiten(base, zca)
        for prep, data in sets.items():
            small = data.head(n_small, n_small)
            for arch in architectures:
                net = architecture(arch, "relu", fc_depth if arch == "fc" else depth,
                                   w_std=2**0.5, b_std=b_std)
                extra = {"preprocessing": prep, "image": image, "ridge": ridge,
                         "depth": fc_depth if arch == "fc" else depth}
                if arch not in SUBSET_ONLY and (n_train, n_test) != (n_small, n_small):
                    found, _ = kernel_rows(arch, net, data, ridge=ridge)
                    rows += [{**r, **extra} for r in found]
                    _report(say, found, prep)
                found, lr = kernel_rows(arch, net, small, ridge=ridge, steps=steps, rate=rate)
                rows += [{**r, **extra} for r in found]
                _report(say, found, prep)
                sizes = fc_widths if arch == "fc" else widths
                if sizes and (prep == "none" or finite_zca):
                    found = finite_rows(arch, net, small, widths=sizes, seeds=seeds, steps=steps,
                                        learning_rate=lr, center=center, seed=seed)
                    rows += [{**r, **extra} for r in found]
                    _report(say, found, prep)
        seconds = time.perf_counter() - start
        settings["seconds"] = round(seconds, 1)
        if paths is None:
            return Lee2020Result(rows, seconds, settings)
        write_csv(paths[0], rows)
        figure(paths[1], rows, architectures,
               title=f"Lee et al. 2020 at small scale: {image} digits, ReLU, conv depth {depth}, "
                     f"FC depth {fc_depth}, {steps} steps, ridge {ridge:g} x mean diag")
        write_atomic(paths[2], json.dumps(settings, indent=1) + "\n")
    return Lee2020Result(rows, seconds, settings, *paths)


def _report(say, rows: list[dict], prep: str) -> None:
    for r in rows:
        std = f" +- {100 * r['accuracy_std']:.1f}" if r["model"] == "finite" else ""
        say(f"{r['architecture']:>7} {r['model']:>6} width {r['width']!s:>5} {prep:>4} "
            f"n={r['n_train']}: accuracy {100 * r['accuracy']:.1f}%{std}, mse {r['mse']:.4f} "
            f"({r['seconds']:.1f} s){' ' + r['note'] if r['note'] else ''}")


__all__ = ["ARCHITECTURES", "Lee2020Result", "run"]
