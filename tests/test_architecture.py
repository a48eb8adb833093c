"""The layering of arlif/ (docs/architecture.md), checked on the source so that it stays true.

Every import of an arlif module, at the top of a file or inside a function, is an edge, and so
is every parent package that import runs first (`import arlif.a.b` executes `arlif/a/__init__.py`)
unless the importing module sits inside that package (then it is already running); the
library (everything outside runner/, reports/ and search/) imports none of the layers above it,
the runner imports neither reports nor search, and the module graph has no cycle.
"""

import ast
import re
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


def with_parents(source: str, targets: set[str]) -> set[str]:
    """`targets` plus the packages importing each one executes: its parents, except `source`'s own."""
    own = {".".join(source.split(".")[:i]) for i in range(1, source.count(".") + 2)}
    found = set()
    for target in targets:
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found - own


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in PACKAGE.rglob("*.py"):
        source = module_name(path)
        edges[source] = with_parents(source, imports(path)) - {source}
    return edges


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


def test_the_graph_counts_the_parent_packages_an_import_runs():
    """`from arlif.spikes.dynamics import X` in a kernel runs `arlif/spikes/__init__.py` first: an edge; a
    module's own packages are already running when it is imported, so they are no edge."""
    assert with_parents("arlif.kernels.cpu", {"arlif.spikes.dynamics", "arlif.kernels.availability"}) == {
        "arlif.spikes", "arlif.spikes.dynamics", "arlif.kernels.availability"}


def test_imports_load_only_what_they_need_and_timm_finds_the_models_either_way():
    """In one fresh process, in this order: importing the kernels never executes arlif/neurons/__init__.py (they
    sit below the neurons); a researcher's `import arlif.neurons` (and models, loss, instruments) pays for torch
    only: no timm, Hydra, W&B, Dynamo or the runner; train.py's checks before any data (a composed config, the
    model built on the meta device) load no Dynamo either, so a mistyped key costs seconds less; and timm knows
    the models whether it is imported after arlif (this probe) or before it (a second one)."""
    first = ("import sys, arlif.kernels, arlif.kernels.aot; print('arlif.neurons' in sys.modules); "
             "import arlif.neurons, arlif.models, arlif.loss, arlif.instruments.energy; "
             "print(sorted(m for m in ('timm', 'hydra', 'omegaconf', 'wandb', 'optuna', 'torch._dynamo', 'arlif.runner', "
             "'arlif.reports', 'arlif.search') if m in sys.modules)); "
             "from arlif.runner.config import compose; from arlif.runner.training import train; "
             "from arlif.runner.build import check_model; check_model(compose(['model=resnet18', 'dataset=cifar10', "
             "'T=2'])); print('torch._dynamo' in sys.modules); import arlif; ")
    create = ("import timm; m = timm.create_model('arlif_quickcnn', num_classes=3, in_chans=1, img_size=8); "
              "print(type(m).__name__, len(timm.list_models('arlif_*')))")
    for probe in (first + create, "import timm, arlif; " + create):
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
        lines = out.stdout.splitlines()
        if probe.startswith("import sys"):
            assert lines[:3] == ["False", "[]", "False"], lines
            lines = lines[3:]
        name, count = lines[0].split()
        assert name == "SpikingVGG" and int(count) >= 5


def test_the_architecture_doc_lists_what_reports_and_search_import_from_the_runner():
    """docs/architecture.md's table "What they import from the runner" names, per module, exactly the runner
    modules that module imports (top-level and lazy imports alike)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("What they import from the runner", 1)[1].split("\n\n", 2)[1]
    runner = {p.stem for p in (PACKAGE / "runner").glob("*.py")}
    documented = {}
    for row in section.splitlines()[2:]:
        importer, imported = row.strip("|").split("|")
        names = {token.split(".")[0] for token in re.findall(r"`([\w.]+)", imported)}
        documented["arlif." + importer.strip().strip("`").removesuffix(".py").replace("/", ".")] = names & runner
    actual = {source: {t.split(".")[2] for t in targets if t.startswith("arlif.runner.")}
              for source, targets in graph().items() if layer(source) in ("reports", "search")}
    assert documented == {source: names for source, names in actual.items() if names}
