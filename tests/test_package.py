"""arlif as an installable package: the wheel holds the modules and the kernel source, an installed copy
works from outside the checkout, and the "own network" example of docs/neurons.md runs as written."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import arlif
from arlif.neurons import neuron_layers

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("arlif", "hydra_plugins")
# an installed copy, run from a folder outside the checkout: timm model, fused CPU kernel against the reference
INSTALLED_CHECK = """
import sys, warnings
import timm, torch
import arlif
from arlif.kernels import cpu, resolve_backend
from arlif.neurons import ARLIF

assert arlif.__file__.startswith(sys.argv[1]), arlif.__file__
assert cpu.SOURCE.is_file() and cpu.SOURCE.is_relative_to(sys.argv[1]), cpu.SOURCE
model = timm.create_model("arlif_resnet18", num_classes=10, in_chans=3, img_size=32)
assert model(torch.rand(2, 3, 32, 32), T=2).shape == (2, 2, 10)

warnings.simplefilter("error")  # a kernel that cannot build warns and falls back: fail instead
assert resolve_backend("cpu", torch.device("cpu")) == "cpu"
x = torch.randn(4, 3, 50, generator=torch.Generator().manual_seed(0))
results = []
for backend in ("cpu", "reference"):
    neuron = ARLIF(backend=backend)
    xb = x.clone().requires_grad_()
    spikes = neuron(xb)
    (spikes * torch.linspace(-1, 1, 50)).sum().backward()
    results.append((spikes, xb.grad, neuron.alpha.grad, neuron.beta_raw.grad))
for fused, reference in zip(*results):
    torch.testing.assert_close(fused, reference)
assert 0 < results[0][0].mean() < 1 and results[0][1].abs().sum() > 0
print(arlif.__version__)
"""


def copy_checkout(dest: Path) -> Path:
    """The checkout's files without git, caches, run outputs and build products (the build runs on the copy,
    so the checkout gets no build/ or *.egg-info)."""
    top_level = {".git", "outputs", "multirun", "wandb", "data", "results", "build", "dist", ".venv", "venv"}

    def ignore(folder, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return skip | (top_level & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def build_products() -> set[str]:
    """The build/, dist/ and *.egg-info folders in the checkout."""
    return {p.name for p in ROOT.iterdir() if p.name in ("build", "dist") or p.name.endswith(".egg-info")}


def pip(*args, cwd):
    out = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow  # the editable install is checked by the script test below
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    before = build_products()
    source = copy_checkout(tmp_path / "src")
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), ".", cwd=source)
    (wheel,) = (tmp_path / "dist").glob("arlif-*.whl")
    assert wheel.name.startswith(f"arlif-{arlif.__version__}-")
    expected = {p.relative_to(ROOT).as_posix() for package in PACKAGES if (ROOT / package).is_dir()
                for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}
    expected.add("arlif/kernels/cpu_neuron.cpp")
    assert "arlif/data/__init__.py" in expected and "arlif/models/__init__.py" in expected
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"arlif-{arlif.__version__}.dist-info/METADATA").decode()
    assert expected <= names, sorted(expected - names)
    assert not {n for n in names if n.startswith(("tests/", "conf/", "scripts/"))}
    assert "Requires-Python: >=3.10" in metadata and "Requires-Dist: torch>=2.2" in metadata

    target = tmp_path / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", INSTALLED_CHECK, str(target)], cwd=outside, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == [arlif.__version__]
    assert build_products() == before


def test_own_network_example_in_the_docs_runs(capsys):
    text = (ROOT / "docs" / "neurons.md").read_text()
    section = text.split("## Using AR-LIF in your own network", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace = {"__name__": "docs_example"}
    exec(compile(code, "<docs/neurons.md: Using AR-LIF in your own network>", "exec"), namespace)
    model, losses, params, rates = (namespace[k] for k in ("model", "losses", "params", "rates"))
    layers = [name for name, _ in neuron_layers(model)]
    assert len(layers) == 2 and list(params) == layers and list(rates) == layers
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert all(alpha != 1.0 and beta != 0.0 for alpha, beta in params.values())  # both were trained
    assert all(0 < rate < 1 for rate in rates.values())
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + len(layers) and printed[0].startswith("loss ")


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_git_ignores_install_and_build_leftovers():
    leftovers = [".venv/bin/python", "venv/lib/site.py", "build/lib/arlif/neurons.py", "dist/arlif-0.1.0.whl",
                 "arlif.egg-info/PKG-INFO"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *leftovers], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == leftovers


def test_a_script_runs_from_outside_the_checkout_after_the_readme_install(tmp_path):
    """requirements.txt installs the checkout (`-e .`), so scripts need no sys.path edit: make_tables.py, started
    from another folder with no PYTHONPATH, imports arlif and ends a bad input with its one error line."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tables.py"), str(tmp_path / "nothing")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "does not exist" in out.stderr, out.stderr
    assert "-e ." in (ROOT / "requirements.txt").read_text().splitlines()
