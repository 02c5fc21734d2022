"""Imports run one way: run_stream/app -> pipeline + stages (+ thermal) -> lmfusion + calibration -> common.

pipeline/ imports neither stages/ nor lmfusion/; lmfusion/ and calibration/ import neither
pipeline/ nor stages/; and no module imports itself through others (no import loops), counting
imports inside functions too."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "pipeline", "stages", "thermal", "lmfusion", "calibration", "common")
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "app": {"pipeline", "stages", "thermal", "lmfusion", "calibration", "common"},
    "pipeline": {"common"},
    "stages": {"pipeline", "thermal", "lmfusion", "calibration", "common"},
    "thermal": {"pipeline", "common"},         # the IR camera's counts: a packet-level concern beside stages/
    "lmfusion": {"common"},
    "calibration": {"common"},
    "common": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, mod: str = "") -> set[str]:
    """Every project module `path` (module `mod`, default: its place in the tree) imports, at any
    depth of the file (functions too); relative imports resolved."""
    mod = mod or module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in PACKAGES}
    return out


def project_modules() -> dict[str, Path]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")] + [REPO / "run_stream.py"]
    return {module_name(p): p for p in files}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in (`pkg.mod.func` -> `pkg.mod`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_packages_import_only_downwards():
    wrong = []
    for mod, path in project_modules().items():
        top = mod.split(".")[0]
        if top == "run_stream":
            continue
        for name in imports_of(path):
            other = name.split(".")[0]
            if other != top and other not in ALLOWED[top]:
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "imports running the wrong way:\n" + "\n".join(sorted(wrong))


def test_no_import_loops():
    modules = project_modules()
    graph = {m: {r for n in imports_of(p) if (r := resolve(n, modules)) and r != m} for m, p in modules.items()}
    # A package's __init__ importing its own submodules is how packages work, not a loop.
    graph = {m: {r for r in deps if not m.startswith(r + ".") and not r.startswith(m + ".")} for m, deps in graph.items()}
    loops, done, stack = [], set(), []

    def visit(m: str) -> None:
        if m in stack:
            loops.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in done:
            return
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            visit(d)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    assert not loops, "import loops:\n" + "\n".join(loops)


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from stages.fusion import FusionStage\n    from ..lmfusion import api\n")
    assert imports_of(bad, "pipeline.sub.x") >= {"stages.fusion.FusionStage", "pipeline.lmfusion.api"}
    bad.write_text("from .. import engines\n")
    assert "lmfusion.engines" in imports_of(bad, "lmfusion.sub.x")
