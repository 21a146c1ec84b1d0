"""The data of the Lee et al. 2020 reproduction (``experiments.lee2020``): an IDX folder of
digits split 50/50 stratified, pixels scaled to [0, 1], images average-pooled, a balanced
smaller subset, regularized ZCA whitening and the zero-mean one-hot targets of the paper.

Lee, Schoenholz, Pennington, Adlam, Xiao, Novak & Sohl-Dickstein, "Finite versus infinite neural
networks: an empirical study", NeurIPS 2020, arXiv 2007.15801: targets one-hot minus 1/C
(-0.1 for ten classes), ZCA whitening with a regularization relative to the mean eigenvalue of
the training covariance (``infnet.data.ZCAWhitening``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...data import ZCAWhitening, load_dataset

Tensor = torch.Tensor


@dataclass(frozen=True)
class Images:
    """One preprocessing of the data: float64 images (n, 1, H, W) and labels 0..C-1."""

    x_train: Tensor
    y_train: np.ndarray
    x_test: Tensor
    y_test: np.ndarray
    classes: int

    def head(self, n_train: int, n_test: int) -> Images:
        """The balanced subset: the first ``n_train`` / ``n_test`` of ``balanced_order``."""
        tr, te = balanced_order(self.y_train)[:n_train], balanced_order(self.y_test)[:n_test]
        return Images(self.x_train[tr], self.y_train[tr], self.x_test[te], self.y_test[te],
                      self.classes)

    def targets(self, labels: np.ndarray | None = None) -> Tensor:
        """One-hot minus 1/C (the paper's zero-mean targets), float64 (n, C)."""
        labels = self.y_train if labels is None else labels
        eye = torch.eye(self.classes, dtype=torch.float64)
        return eye[torch.as_tensor(labels)] - 1.0 / self.classes


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def balanced_order(labels: np.ndarray) -> np.ndarray:
    """Indices taking the classes in turn (the first of each class, then the second...), in
    the given order within a class: any prefix is as balanced as the classes allow."""
    labels = np.asarray(labels)
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = labels == c
        rank[members] = np.arange(int(members.sum()))
    return np.lexsort((labels, rank))


def load_images(data_dir, *, n_train: int, n_test: int, pool: int = 2, seed: int = 0) -> Images:
    """The IDX folder's digits: split 50/50 stratified (``infnet.data.load_dataset``),
    stratified subsets of ``n_train`` and ``n_test``, pixels / 255, ``pool`` x ``pool``
    average pooling, as (n, 1, H / pool, W / pool) float64; labels renumbered 0..C-1.

    Raises ``FileNotFoundError`` for a missing folder or IDX pair and ``ValueError`` for sizes
    the data cannot give or a ``pool`` that does not divide the image sides."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (it must hold the IDX pair "
                                "*images*idx3* and *labels*idx1*, gzipped or not)")
    pool = positive_int(pool, "pool")
    x_tr, l_tr, x_te, l_te = load_dataset(folder, n_train=n_train, n_test=n_test, seed=seed)
    if x_tr.ndim != 3 or x_tr.shape[1] % pool or x_tr.shape[2] % pool:
        raise ValueError(f"pool={pool} must divide the image sides, got images of shape "
                         f"{x_tr.shape[1:]}")
    names, codes = np.unique(np.concatenate([l_tr, l_te]), return_inverse=True)
    if len(names) < 2:
        raise ValueError(f"the labels hold a single class ({names[0]}): nothing to classify")

    def images(a: np.ndarray) -> Tensor:
        x = torch.as_tensor(np.asarray(a, dtype=np.float64) / 255.0)[:, None]
        return torch.nn.functional.avg_pool2d(x, pool) if pool > 1 else x

    return Images(images(x_tr), codes[:len(l_tr)], images(x_te), codes[len(l_tr):], len(names))


def zca_whiten(data: Images, regularization: float) -> Images:
    """Regularized ZCA (``infnet.data.ZCAWhitening``) fit on the flattened training images and
    applied to both sets, reshaped back to images."""
    shape = data.x_train.shape[1:]
    zca = ZCAWhitening(regularization).fit(data.x_train.reshape(len(data.x_train), -1).numpy())

    def white(x: Tensor) -> Tensor:
        return torch.as_tensor(zca.transform(x.reshape(len(x), -1).numpy())).reshape(-1, *shape)

    return Images(white(data.x_train), data.y_train, white(data.x_test), data.y_test, data.classes)
