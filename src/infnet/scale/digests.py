"""Fingerprints of kernel stores: what a store is made for, and the code digests behind them.

``fingerprint`` is a sha256 of the inputs (bytes, shape, dtype: ``infnet.core.files.array_digest``),
of the network (``repr`` and, for activations outside the catalog, their functions' code:
bytecode, names, constants, nested code and closure values, ``_code_digest``) and of the
parameters (kind, tile, dtype, symmetric). ``_differences`` says in words what differs between
two fingerprints, for the error that refuses a store made for other inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json

from ..core.files import array_digest, describe_digest


def _code_digest(obj, h, depth: int = 0) -> None:
    """Feed a function's code (bytecode, names, constants, nested code, closure values) to h."""
    if not hasattr(obj, "__code__") or depth > 4:
        h.update(repr(obj).encode() if isinstance(obj, (int, float, str, bool)) else b"?")
        return
    stack = [obj.__code__]
    while stack:
        c = stack.pop()
        stack += [k for k in c.co_consts if hasattr(k, "co_code")]
        consts = [sorted(map(repr, k)) if isinstance(k, frozenset) else k  # (hash-seed order)
                  for k in c.co_consts if not hasattr(k, "co_code")]
        h.update(c.co_code + repr((c.co_names, consts)).encode())
    for cell in getattr(obj, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # (an empty cell)
            _code_digest(cell.cell_contents, h, depth + 1)


def _network_part(net) -> dict:
    """repr of the network, and the code of activations that are not the catalog's (two user
    functions of one name have one repr)."""
    h = hashlib.sha256(repr(net).encode())
    for act in getattr(net, "activations", []):
        if act.catalog_spec() is None:
            for name in ("fn", "closed_form", "angle_form", "derivative_fn"):
                _code_digest(getattr(act, name, None), h)
    return {"repr": repr(net), "sha256": h.hexdigest()}


def fingerprint(net, x1, x2=None, *, kind: str, tile: int, dtype) -> dict:
    """The fingerprint of a kernel store: what it is made for, and its sha256.

    The parts are the data (x1, x2: shape, dtype and sha256 of their bytes), the network
    (``repr`` and, for activations outside the catalog, their functions' code) and the
    parameters (kind, tile, dtype, symmetric); their sha256 is under the key ``"sha256"``. A
    store made for another fingerprint is refused with what differs.

    Parameters
    ----------
    net : infnet.Network
        The network.
    x1 : array_like or torch.Tensor
        The inputs of the rows.
    x2 : array_like or torch.Tensor, optional
        The inputs of the columns; None: the symmetric kernel of x1.
    kind : {"ntk", "nngp"}
        The kernel.
    tile : int
        The tile size.
    dtype : torch.dtype
        The stored entries' dtype.

    Returns
    -------
    dict
        ``{"data": ..., "network": ..., "params": ..., "sha256": ...}``, JSON-serializable.

    Examples
    --------
    >>> net = infnet.fc("relu", depth=2, w_std=2**0.5)
    >>> x = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> x = x / x.norm(dim=1, keepdim=True)
    >>> fp = infnet.scale.fingerprint(net, x, kind="ntk", tile=8, dtype=torch.float64)
    >>> sorted(fp), len(fp["sha256"])
    (['data', 'network', 'params', 'sha256'], 64)
    >>> fp["params"]
    {'kind': 'ntk', 'tile': 8, 'dtype': 'float64', 'symmetric': True}
    >>> fp == infnet.scale.fingerprint(net, x.clone(), kind="ntk", tile=8, dtype=torch.float64)
    True
    >>> fp == infnet.scale.fingerprint(net, x, kind="nngp", tile=8, dtype=torch.float64)
    False
    """
    parts = {"data": {"x1": array_digest(x1), "x2": array_digest(x2)},
             "network": _network_part(net),
             "params": {"kind": kind, "tile": int(tile), "dtype": str(dtype).replace("torch.", ""),
                        "symmetric": x2 is None}}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {**parts, "sha256": digest}


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints, in words."""
    show = describe_digest
    out = [f"data {key} differ (store: {show(old['data'][key])}; now: {show(new['data'][key])})"
           for key in ("x1", "x2") if old["data"][key] != new["data"][key]]
    if old["network"]["sha256"] != new["network"]["sha256"]:
        same = old["network"]["repr"] == new["network"]["repr"]
        out.append("network differs" + (" (same repr, different activation code)" if same else
                                         f" (store: {old['network']['repr']}; "
                                         f"now: {new['network']['repr']})"))
    for key, value in new["params"].items():
        if old["params"].get(key) != value:
            out.append(f"{key} differs (store: {old['params'].get(key)!r}; now: {value!r})")
    return out or ["fingerprint differs"]

