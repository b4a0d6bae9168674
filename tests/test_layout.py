"""The package layout of docs/CONTRACTS.md ("Layout"), checked on the import graph (every import
statement in every module, also those inside functions): entries never reach into each other,
libraries never import entries, models import only utils, envs never import policies, and every
entry is a subpackage with config.py, loop.py and __main__.py."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pixio_robot"
ENTRIES = {"pretrain", "collect", "train", "evaluate", "rl", "benchmark", "probe", "quickstart"}
LIBRARIES = {"models", "data", "envs", "policies", "evaluation", "utils", "configs"}
# composite entries call these entries' public API (the package itself, not its modules)
COMPOSES = {("benchmark", "train"), ("benchmark", "evaluate"), ("quickstart", "pretrain"), ("quickstart", "benchmark")}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute pixio_robot module imported, line) for every import in `path`."""
    mod = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = mod.split(".")[:-node.level] if path.name != "__init__.py" else mod.split(".")[:len(mod.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return [(n, ln) for n, ln in out if n == "pixio_robot" or n.startswith("pixio_robot.")]


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _graph():
    for path in sorted(PKG.rglob("*.py")):
        owner = path.relative_to(PKG).parts[0].removesuffix(".py")
        for name, line in _imports(path):
            yield path.relative_to(PKG.parent), owner, name, line


def test_every_entry_is_a_subpackage_shaped_like_pretrain():
    for entry in ENTRIES:
        d = PKG / entry
        assert d.is_dir() and not (PKG / f"{entry}.py").exists(), entry
        for f in ("__init__.py", "__main__.py", "config.py", "loop.py"):
            assert (d / f).is_file(), f"{entry}/{f}"
    assert {p.name for p in PKG.iterdir() if p.suffix == ".py"} <= {"__init__.py", "_timm_hook.py"}


def test_no_entry_imports_another_entry():
    bad = []
    for where, owner, name, line in _graph():
        target = _top(name)
        if owner in ENTRIES and target in ENTRIES and target != owner:
            public = name == f"pixio_robot.{target}"  # `from pixio_robot.train import run_train`
            if not ((owner, target) in COMPOSES and public):
                bad.append(f"{where}:{line} imports {name}")
    assert not bad, bad


def test_libraries_never_import_entries_and_models_only_utils():
    bad = []
    for where, owner, name, line in _graph():
        target = _top(name)
        if owner in LIBRARIES and target in ENTRIES:
            bad.append(f"{where}:{line} (library {owner}) imports entry {name}")
        if owner == "models" and target not in (None, "models", "utils"):
            bad.append(f"{where}:{line} (models) imports {name}")
        if owner == "envs" and target == "policies":
            bad.append(f"{where}:{line} (envs) imports {name}")
        if owner == "utils" and target not in (None, "utils"):
            bad.append(f"{where}:{line} (utils) imports {name}")
    assert not bad, bad


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The graph is only as good as the parser: a function-level import is an edge too."""
    f = PKG / "utils" / "io.py"
    names = {n for n, _ in _imports(f)}
    src = ast.parse(f.read_text())
    nested = [n for n in ast.walk(src) if isinstance(n, ast.ImportFrom) and n.col_offset > 0
              and (n.module or "").startswith("pixio_robot")]
    assert all(n.module in names for n in nested)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_edges() -> dict[str, set[str]]:
    """module -> modules it imports at module level (TYPE_CHECKING blocks included), resolved to
    existing modules; a package's own submodules (lazy re-exports) are not edges of the package."""
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        nodes = list(tree.body)
        for n in tree.body:  # `if TYPE_CHECKING:` bodies count: a config class imported for typing is a circle too
            if isinstance(n, ast.If):
                nodes += n.body
        for n in nodes:
            names = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and not n.level and n.module:
                names = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
            for name in names:
                if name in mods and name != mod and not name.startswith(mod + "."):
                    edges[mod].add(name)
    return edges


def test_no_import_cycles_between_modules():
    edges = _top_level_edges()
    cycles = sorted({tuple(sorted((a, b))) for a, outs in edges.items() for b in outs if a in edges.get(b, ())})
    assert not cycles, cycles
    assert "pixio_robot.policies.encoder_config" in edges["pixio_robot.policies.encoder_adapter"]  # the graph is real
