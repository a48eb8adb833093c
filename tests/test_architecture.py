"""The layering of arlif/ (docs/architecture.md), checked on the source so that it stays true.

Every import of an arlif module, at the top of a file or inside a function, is an edge; the
library (everything outside runner/, reports/ and search/) imports none of the layers above it,
the runner imports neither reports nor search, and the module graph has no cycle.
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "arlif"
ALLOWED = {"library": {"library"}, "runner": {"library", "runner"},
           "reports": {"library", "runner", "reports"}, "search": {"library", "runner", "search"}}
MAX_LINES = 200


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer(name: str) -> str:
    top = name.split(".")[1] if "." in name else ""
    return top if top in ("runner", "reports", "search") else "library"


def imports(path: Path) -> set[str]:
    """The arlif modules `path` imports (`from arlif.x import y` names module arlif.x.y when that is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("arlif"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("arlif"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if is_module(sub) else base)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_imports_point_down_only():
    wrong = [f"{source} ({layer(source)}) imports {target} ({layer(target)})"
             for source, targets in graph().items() for target in sorted(targets)
             if layer(target) not in ALLOWED[layer(source)]]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_class_or_function_is_longer_than_200_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "\n".join(long)


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The walk finds lazy imports inside functions too, so a library module reaching up is caught."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from arlif.runner.records import LAST\n    import arlif.search.trial\n")
    assert imports(source) == {"arlif.runner.records", "arlif.search.trial"}


def test_importing_the_neurons_loads_no_framework():
    """A researcher's `import arlif.neurons` pays for torch only: no timm, Hydra, W&B or the runner."""
    probe = ("import sys, arlif.neurons, arlif.kernels, arlif.models, arlif.loss, arlif.instruments.energy; "
             "print(sorted(m for m in ('timm', 'hydra', 'omegaconf', 'wandb', 'optuna', 'arlif.runner', "
             "'arlif.reports', 'arlif.search') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_timm_finds_the_models_whichever_is_imported_first():
    for first, second in (("arlif", "timm"), ("timm", "arlif")):
        probe = (f"import {first}, {second}; m = timm.create_model('arlif_quickcnn', num_classes=3, in_chans=1, "
                 "img_size=8); print(type(m).__name__, len(timm.list_models('arlif_*')))")
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
        assert out.stdout.split()[0] == "SpikingVGG" and int(out.stdout.split()[1]) >= 5
