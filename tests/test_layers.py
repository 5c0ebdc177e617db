"""The data path is one-way (docs/architecture.md §1): every import, module-level or inside a
function, points to a lower layer or within a layer, and no module imports itself back
through others. Read from the source with ``ast``, so a lazy import counts too."""

import ast
import os
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("harness", "executors", "workloads", "experiments", "conformance")
# Low to high; a module may import from its own layer or any lower one.
LAYERS = (
    ("harness", "harness.errors"),
    ("harness.ptx", "harness.compile", "harness.gpu"),
    ("harness.emu", "harness.futures", "harness.measure"),
    ("harness.backend", "harness.difftest"),
    ("executors", "workloads"),
    ("harness.counters", "harness.cases"),
    ("harness.results", "harness.orchestrate"),
    ("harness.report", "harness.plot"),
    ("experiments",),
    ("harness.cli", "conformance"),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict:
    mods = {}
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), ROOT)[:-3].replace(os.sep, ".")
                    mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = \
                        os.path.join(root, f)
    return mods


def _imports(mods: dict) -> dict:
    """module -> the project modules it imports (the longest known prefix of each name)."""
    edges = defaultdict(set)
    for name, path in mods.items():
        with open(path) as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # not its own package
                    edges[name].add(t)
    return edges


def _layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "harness" and len(parts) > 1 else parts[0]


def test_every_import_points_down_or_sideways():
    mods = _modules()
    unknown = sorted({_layer(m) for m in mods} - set(RANK))
    assert not unknown, f"put these in LAYERS: {unknown}"
    upward = sorted(f"{a} -> {b}" for a, targets in _imports(mods).items() for b in targets
                    if RANK[_layer(b)] > RANK[_layer(a)])
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = _imports(_modules())
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in list(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
