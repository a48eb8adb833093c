"""scripts/mutation_check.py stays honest: every mutant's snippet is still in the code, exactly once."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mutation_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("mutation_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_mutant_still_applies_and_names_existing_tests():
    check = load_script()
    assert check.snippet_problems() == []
    names = [m.name for m in check.MUTANTS]
    assert len(names) == len(set(names)) and len(names) >= 14
    assert all(m.original != m.replacement for m in check.MUTANTS)


def test_a_snippet_that_is_gone_or_doubled_is_reported(tmp_path):
    check = load_script()
    (tmp_path / "a.py").write_text("x = 1\nx = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    mutants = [check.Mutant("doubled", "a.py", "x = 1", "x = 2", ("tests/test_a.py::test_a",)),
               check.Mutant("gone", "a.py", "y = 1", "y = 2", ("tests/test_a.py::test_b",))]
    assert check.snippet_problems(tmp_path, mutants) == [
        "doubled: the snippet occurs 2 times in a.py (must be once): 'x = 1'",
        "gone: the snippet occurs 0 times in a.py (must be once): 'y = 1'",
        "gone: no test tests/test_a.py::test_b",
    ]
