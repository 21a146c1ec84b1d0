"""The public API's docstrings, in one style (numpydoc): a summary line; a ``Parameters``
section naming every parameter of the signature; ``Returns`` for functions that return
something; ``Raises`` where the code raises; and an ``Examples`` section whose doctest runs
here (so the examples cannot rot). Exceptions and warnings need only a summary."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import re

import numpy as np
import pytest
import torch

import infnet

#: the public namespaces whose ``__all__`` is the API
PACKAGES = ["infnet", "infnet.network", "infnet.predict", "infnet.propagation", "infnet.estimators",
            "infnet.depth", "infnet.empirical", "infnet.data", "infnet.scale"]


#: methods that are the API as much as the functions are
METHODS = [("infnet.Network", "kernel"), ("infnet.Network", "finite"), ("infnet.Activation", "kernel"),
           ("infnet.Activation", "dual"), ("infnet.Activation", "with_params")]


def public():
    seen = {}
    for owner, method in METHODS:
        cls = getattr(infnet, owner.split(".")[1])
        obj = getattr(cls, method)
        seen[id(obj)] = (f"{owner}.{method}", obj)
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in seen:
                seen[id(obj)] = (f"{pkg}.{name}", obj)
    return sorted(seen.values())


API = public()


def section(doc: str, title: str) -> str | None:
    m = re.search(rf"^{title}\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, flags=re.M | re.S)
    return None if m is None else m.group(1)


def documented_names(params: str) -> set[str]:
    names = set()
    for line in params.splitlines():
        m = re.match(r"^(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::|$)", line)
        if m and not line.startswith(" "):
            names.update(n.strip().lstrip("*") for n in m.group(1).split(","))
    return names


def signature_names(obj) -> list[str]:
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj) if f.init and f.repr]
    if inspect.isclass(obj) and getattr(obj, "_is_protocol", False):
        return []  # a typing.Protocol: not instantiated
    if inspect.isclass(obj) and not any("__init__" in vars(c) for c in obj.__mro__[:-1]
                                        if c.__module__.startswith("infnet")):
        return []  # no constructor of its own (a base class, a parameter-free transform)
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")]


def is_exception(obj) -> bool:
    return inspect.isclass(obj) and issubclass(obj, BaseException | Warning)


@pytest.mark.parametrize("name, obj", API, ids=[n for n, _ in API])
def test_numpydoc_sections(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    if is_exception(obj):
        return
    wanted = signature_names(obj)
    if wanted:
        params = section(doc, "Parameters")
        assert params is not None, f"{name}: no Parameters section"
        missing = set(wanted) - documented_names(params)
        assert not missing, f"{name}: parameters not documented: {sorted(missing)}"
    if inspect.isfunction(obj):
        ret = inspect.signature(obj).return_annotation
        if ret not in (None, "None", inspect.Signature.empty):
            assert section(doc, "Returns") is not None, f"{name}: no Returns section"
    assert section(doc, "Examples") is not None and ">>>" in doc, f"{name}: no Examples section"


@pytest.mark.parametrize("name, obj", [(n, o) for n, o in API if not is_exception(o)],
                         ids=[n for n, o in API if not is_exception(o)])
def test_examples_run(name, obj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"infnet": infnet, "torch": torch, "np": np}
    tests = finder.find(obj, name, globs=globs)
    assert tests and any(t.examples for t in tests), f"{name}: no doctest"
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{name}: {runner.failures} failing example(s) (run pytest -s)"
