"""Every Triton neuron kernel builds to cubin for Ampere (sm_80) and Hopper (sm_90) in fp32,
fp16 and bf16 with the engine's launch options, on this machine without a GPU
(`python -m arlif.kernels.aot`, a cold Triton cache, outside the interpreter)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arlif import kernels
from arlif.kernels import aot

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not kernels.triton_installed(), reason="needs triton")


def build_all(tmp_path, *flags):
    # TRITON_INTERPRET=1 (tests/conftest.py) would make @triton.jit return interpreted kernels.
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path / "triton-cache")}
    out = subprocess.run([sys.executable, "-m", "arlif.kernels.aot", "--jobs", "2", *flags], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()


@pytest.mark.slow  # Triton compiles for two GPU generations on the CPU
def test_every_kernel_code_path_builds_for_sm80_and_sm90(tmp_path):
    lines = build_all(tmp_path, "--code-paths-only")
    expected = aot.cases(every_grad_subset=False)
    assert len(expected) == 2 * 3 * 9  # archs x dtypes x (3 forward + 3 scratch backward + 3 register backward)
    built = [line for line in lines if line.startswith("ok ")]
    assert len(built) == len(expected), "\n".join(lines)
    assert {(f"sm_{a}", d) for a in aot.ARCHS for d in aot.DTYPES} == {tuple(line.split()[1:3]) for line in built}


@pytest.mark.slow
def test_every_kernel_variant_builds(tmp_path):
    lines = build_all(tmp_path)
    assert f"{len(aot.cases())} of {len(aot.cases())} kernels built" in lines[-1]

