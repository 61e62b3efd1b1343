"""The house rules of the package layout, checked from the source tree: size limits, one-way imports with no cycles,
a torch-free index, every package shipped.

Imports are read with ``ast`` (every ``import`` statement, also the ones inside functions), so a cycle hidden in a
lazy import is found too; a fresh interpreter then imports every module to prove they all load.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "featgraph"
MAX_MODULE_LINES = 400
MAX_MODULES_PER_FOLDER = 12
MAX_CLI_COMMAND_LINES = 80

# Room-level cycles tolerated, each with its reason (none today: sae <-> formats ended with featgraph.io.weights,
# stitch <-> training with featgraph.training.delta_mse). A new arrow back into a room that depends on you fails:
# it is a design change to make on purpose.
KNOWN_ROOM_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every featgraph module ``name`` imports (module level, inside functions and TYPE_CHECKING blocks alike)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from featgraph.io import readers`
    return {m for m in found if m in known and m != name}


def _is_type_only(path: Path, target: str) -> bool:
    """True when every import of ``target`` in ``path`` sits under ``if TYPE_CHECKING:`` (never executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded, total = 0, 0
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith(target):
                    guarded += 1
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(target):
            total += 1
    return total > 0 and guarded == total


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_module_is_at_most_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*PKG.rglob("*.py"), *(ROOT / "cli").glob("*.py")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_folder_holds_more_than_12_modules():
    folders = {p.parent for p in PKG.rglob("__init__.py")}
    assert PKG in folders and len(folders) >= 8  # the rooms exist
    crowded = {str(f.relative_to(ROOT)): n for f in folders
               if (n := len([m for m in f.glob("*.py") if m.name != "__init__.py"])) > MAX_MODULES_PER_FOLDER}
    assert not crowded, f"folders with more than {MAX_MODULES_PER_FOLDER} modules: {crowded}"


def test_every_room_states_its_purpose():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 15, f"{init.relative_to(ROOT)} has no statement of the room's purpose"


def test_cli_commands_are_parse_config_run_print():
    commands = sorted((ROOT / "cli").glob("cmd_*.py"))
    assert len(commands) >= 9
    for p in commands:
        text = p.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= MAX_CLI_COMMAND_LINES, f"{p.name}: {len(text.splitlines())} lines"
        if p.name != "cmd_releases.py":  # a listing, no run and no output folder
            assert "Config(" in text and "run_" in text, f"{p.name} does not build a config and call a run_ entry"


def test_no_import_cycles_between_modules():
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    # a package's __init__ re-exporting its own modules is not a cycle: drop parent -> child edges
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    assert sum(len(d) for d in graph.values()) > 100  # the parser does see the imports
    cycles = _cycles(graph)
    assert not cycles, f"import cycles between modules: {[sorted(c) for c in cycles]}"


def test_room_dependencies_run_one_way():
    known = _modules()
    rooms: dict[str, set[str]] = {}
    for name, path in known.items():
        for dep in _imports(name, path, known):
            if _room(dep) != _room(name) and _room(name) != "featgraph" and not _is_type_only(path, dep):
                rooms.setdefault(_room(name), set()).add(_room(dep))
    # the leaves depend on no room: errors and config are imported by every layer
    for leaf in ("featgraph.errors", "featgraph.config"):
        assert not rooms.get(leaf, set()) - {"featgraph.errors", "featgraph.matching", "featgraph.formats"}, leaf
    cycles = [frozenset(c) for c in _cycles(rooms)]
    unexpected = [sorted(c) for c in cycles if c not in KNOWN_ROOM_CYCLES]
    assert not unexpected, f"rooms importing each other: {unexpected}"


def test_every_module_imports_in_a_fresh_interpreter_and_the_index_stays_free_of_torch():
    modules = sorted(_modules())
    code = (
        "import sys\n"
        "import featgraph, featgraph.index, featgraph.io.readers, featgraph.io.arrays, featgraph.formats, "
        "featgraph.matching, featgraph.activations.text\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "print(len(sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_public_api_names_resolve_lazily():
    code = (
        "import sys, featgraph\n"
        "assert 'torch' not in sys.modules\n"
        "missing = [n for n in featgraph.__all__ if not hasattr(featgraph, n)]\n"
        "assert not missing, missing\n"
        "for n in ('read_graphml', 'splitting_tree', 'hybrid', 'analyze_pair', 'save_saelens', 'FamiliesConfig',\n"
        "          'run_families', 'run_eval', 'run_stitch'):\n"
        "    assert n in featgraph.__all__ and callable(getattr(featgraph, n)), n\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_setup_cfg_ships_every_package_and_the_registry():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in PKG.rglob("__init__.py")}
    assert packages <= listed, f"packages missing from setup.cfg: {sorted(packages - listed)}"
    data = cfg["options.package_data"]["featgraph.hub"]
    assert list((PKG / "hub").glob(data.strip())), "the release registry is not where package_data says"
