"""The house's plan, checked on the source: packages in dependency order (each imports only
packages below it), no import cycle between modules, no private name imported from another
package, nothing but packages at the top of ``src/infnet``, no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import infnet

SRC = Path(infnet.__file__).parent
#: bottom to top: a package may import only packages before it in this list
ORDER = ["core", "numerics", "activations", "depth", "empirical", "network", "data", "predict",
         "gp", "estimators", "propagation", "scale", "experiments", "cli"]


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = modules()


def imports(name: str, path: Path, source: str | None = None) -> list[tuple[str, str]]:
    """(imported module or package, imported name) for every ``from infnet... import`` and
    relative import in the module, lazy ones inside functions included."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "infnet":
                continue
            for a in node.names:
                full = f"{target}.{a.name}"
                out.append((full if full in MODULES else target, a.name))
        elif isinstance(node, ast.Import):
            out.extend((a.name, "") for a in node.names if a.name.startswith("infnet"))
    return out


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_top_holds_only_packages():
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    packages = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(ORDER)


def upward(name: str, found: list[tuple[str, str]]) -> list[str]:
    mine = package_of(name)
    return [f"{name} imports {target} ({package_of(target)} is above {mine})"
            for target, _ in found
            if mine is not None and package_of(target) not in (None, mine)
            and ORDER.index(package_of(target)) > ORDER.index(mine)]


def test_packages_import_only_packages_below_them():
    assert [b for name, path in MODULES.items() for b in upward(name, imports(name, path))] == []


def test_no_private_name_crosses_a_package():
    bad = [f"{name} imports {target}.{what}" for name, path in MODULES.items()
           for target, what in imports(name, path)
           if what.startswith("_") and not what.startswith("__")
           and package_of(target) != package_of(name)]
    assert bad == []


def test_no_import_cycle_between_modules():
    """Tarjan's strongly connected components on module imports (a package's ``__init__``
    re-exports are not edges: importing a package runs it first anyway)."""
    graph = {name: {t for t, _ in imports(name, path)
                    if t in MODULES and t != name and MODULES[t].name != "__init__.py"}
             for name, path in MODULES.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_over_400_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_the_check_catches_an_upward_import():
    path = SRC / "core" / "checks.py"
    lazy = "def f():\n    from ..network.layers import Dense\n    from .errors import X\n"
    assert upward("infnet.core.checks", imports("infnet.core.checks", path, lazy)) == [
        "infnet.core.checks imports infnet.network.layers (network is above core)"]
