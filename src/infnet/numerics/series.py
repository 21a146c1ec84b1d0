"""Truncated power series as coefficient arrays (degree 0 first): products, powers, the
derivative, evaluation on tensors and an estimate of the radius of convergence."""

from __future__ import annotations

import math

import numpy as np
import torch

Tensor = torch.Tensor


def mul(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """The product of two power series (coefficients from degree 0) truncated at degree n."""
    return np.convolve(a, b)[:n + 1]


def powers(p: np.ndarray, n: int) -> list[np.ndarray]:
    """p^0, p^1, ..., p^n truncated at degree n."""
    out = [np.eye(1, n + 1)[0]]
    for _ in range(n):
        out.append(mul(out[-1], p, n))
    return out


def horner(coef: np.ndarray, x: Tensor) -> Tensor:
    """sum_k coef[k] x^k, elementwise on a tensor."""
    acc = torch.zeros_like(x)
    for c in coef[::-1]:
        acc = acc * x + float(c)
    return acc


def derivative(coef: np.ndarray) -> np.ndarray:
    """The coefficients of the derivative series."""
    return coef[1:] * np.arange(1, len(coef))


def radius(coef: np.ndarray) -> float:
    """A lower estimate of the radius of convergence from coefficients 2..n."""
    r = math.inf
    for j in range(2, len(coef)):
        if coef[j] != 0:
            r = min(r, abs(coef[j]) ** (-1.0 / (j - 1)))
    return r
