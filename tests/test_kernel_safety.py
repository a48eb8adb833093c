"""Fused kernels that guard themselves: the self-check against the reference loop (faulty
engines injected on CPU and through Triton's interpreter), one build of the CPU kernel for
every checkout and for every torch installation (real virtual environments), and the first-use
log lines of that build."""

import math
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch

import arlif.kernels
from arlif.runner.cli import run_cli
from arlif.errors import ConfigError
from arlif.kernels import cpu as cpu_engine
from arlif.kernels import selfcheck
from arlif.kernels.selfcheck import KernelCheckError
from arlif.neurons import NeuronSpec, build_neuron
from kernel_faults import Faulty

pytestmark = pytest.mark.usefixtures("fresh_verdicts")  # tests/conftest.py
CHECKED = str(math.prod(selfcheck.check_shape()))  # neuron-steps of the self-check's input

REPO = Path(__file__).resolve().parents[1]
TRITON = arlif.kernels.triton_installed() and not torch.cuda.is_available()  # interpreter tests


@pytest.fixture
def faulty_cpu(monkeypatch):
    """A faulty CPU engine behind `arlif.kernels`; torch.compile counts as unavailable, so that `auto`
    falls back to the eager reference loop (tests/test_compile.py covers the compiled fallback)."""
    def install(fault):
        engine = Faulty(cpu_engine, fault)
        monkeypatch.setattr(arlif.kernels, "_cpu_engine", lambda: engine)
        monkeypatch.setattr(arlif.kernels.compiled, "available", lambda device: False)
        return engine
    return install


def spikes_and_grad(neuron, x):
    x = x.clone().requires_grad_()
    spikes = neuron(x)
    spikes.sum().backward()
    return spikes, x.grad, neuron.beta_raw.grad


def test_auto_falls_back_to_the_reference_with_one_warning(faulty_cpu):
    engine = faulty_cpu("spike")
    x = torch.randn(4, 8, 50) + 0.5
    neuron = build_neuron("arlif", backend="auto")
    with pytest.warns(RuntimeWarning, match=r"fused cpu neuron kernel failed its self-check .*adaptive reset.*"
                                            r"float32 on cpu.*: 1 of " + CHECKED + r" spikes differ; this process uses the "
                                            r"neuron's step loop"):
        got = spikes_and_grad(neuron, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call, and a second layer, say nothing
        again = spikes_and_grad(build_neuron("arlif", backend="auto"), x)
    want = spikes_and_grad(build_neuron("arlif", backend="reference"), x)
    for mine in (got, again):
        assert all(torch.equal(a, b) for a, b in zip(mine, want)), "the fallback is not the reference loop"
    assert engine.shapes == [selfcheck.check_shape()], "the faulty engine ran on real data"


@pytest.mark.parametrize("fault, problem", [("grad_x", r"the gradient for x is off by 0.01 relative"),
                                            ("grad_beta", r"the gradient for β is off by 0.01 relative")])
def test_explicit_backend_stops_on_a_wrong_gradient(faulty_cpu, fault, problem):
    faulty_cpu(fault)
    with pytest.raises(KernelCheckError, match=problem + r".*set neuron.backend=auto"):
        build_neuron("arlif", backend="cpu")(torch.randn(4, 10))
    assert issubclass(KernelCheckError, ConfigError)  # entry points print it as one line, exit 2


def test_the_check_covers_the_eager_call_with_beta_squashed_inside(faulty_cpu):
    """An engine right through the custom operators (β given) but wrong where it computes β = tanh(b) itself,
    as the eager call asks it to, fails its check."""
    faulty_cpu("squashed_grad_beta")
    with pytest.raises(KernelCheckError, match=r"in its eager call, the gradient for β is off by 0.01 relative"):
        build_neuron("arlif", backend="cpu")(torch.randn(4, 10))


def test_a_healthy_engine_passes_every_case_and_is_checked_once(monkeypatch):
    checked = []
    real_check = selfcheck._check
    monkeypatch.setattr(selfcheck, "_check", lambda *args: checked.append(args[2:]) or real_check(*args))
    for name in ("arlif", "arlif_fixed_alpha", "lif_hard", "lif_soft"):
        for dtype in (torch.float32, torch.bfloat16):
            for _ in range(2):
                build_neuron(name, backend="cpu")(torch.randn(3, 20, dtype=dtype)).sum()
    assert len(checked) == 8, checked  # once per (spec, dtype, α/β gradients)
    assert all(v is None for v in selfcheck._verdicts.values())


@pytest.mark.parametrize("fault, problem", [("eager_beta", r"the gradient for β is off by 0.01 relative"),
                                            ("eager_layout", r"\d+ of " + CHECKED + " spikes differ")])
def test_a_broken_eager_call_fails_the_self_check(faulty_cpu, fault, problem):
    """An engine whose operators are right but whose eager call (what an eager AR-LIF forward runs) is wrong:
    `auto` warns once and runs the step loop, an explicit `cpu` stops."""
    engine = faulty_cpu(fault)
    x = torch.randn(4, 8, 50) + 0.5
    with pytest.warns(RuntimeWarning, match=r"fused cpu neuron kernel failed its self-check .*adaptive reset.*"
                                            r"gradients for x, α, β\): in its eager call, " + problem +
                                            r".*; this process uses the neuron's step loop"):
        got = spikes_and_grad(build_neuron("arlif", backend="auto"), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second layer says nothing
        again = spikes_and_grad(build_neuron("arlif", backend="auto"), x)
    want = spikes_and_grad(build_neuron("arlif", backend="reference"), x)
    for mine in (got, again):
        assert all(torch.equal(a, b) for a, b in zip(mine, want)), "the fallback is not the reference loop"
    assert engine.shapes == [selfcheck.check_shape()], "the faulty engine ran on real data"
    selfcheck.forget()
    with pytest.raises(KernelCheckError, match=r"in its eager call, " + problem + r".*set neuron.backend=auto"):
        build_neuron("arlif", backend="cpu")(x)


@pytest.mark.parametrize("name", ["arlif", "lif_hard"])
def test_the_cpu_engines_eager_call_passes_the_self_check(monkeypatch, name):
    """The real C++ engine's own autograd node passes, and the check gave it what AR-LIF gives it: the raw b
    with squash (its tanh and tanh's derivative inside C++), steps laid out channels_last, a contiguous
    gradient; its spikes came back in the input's strides."""
    calls = []
    real = cpu_engine.eager

    def spy(x, alpha, beta, spec, squash):
        spikes = real(x, alpha, beta, spec, squash)
        calls.append((x.stride(), x.shape, None if beta is None else beta.item(), squash, spikes.stride()))
        return spikes
    monkeypatch.setattr(cpu_engine, "eager", spy)
    spec = build_neuron(name).spec
    adaptive = spec.reset == "adaptive"
    assert selfcheck._check(cpu_engine, torch.device("cpu"), spec, torch.float32, (adaptive, adaptive)) is None
    (strides, shape, beta, squash, out_strides), = calls
    C, H, W = selfcheck.check_map()
    assert shape == (4, 1, C, H, W) and strides == (C * H * W, C * H * W, 1, W * C, C) == out_strides
    assert squash == adaptive and (beta is None if not adaptive else beta == pytest.approx(selfcheck.CHECK_BETA_RAW))


def test_a_first_call_inside_activation_checkpointing_passes_the_check(fresh_verdicts):
    """The self-check runs in a thread of its own: a neuron's first call made inside
    `torch.utils.checkpoint` (whose saved-tensor hooks stop its recomputation early with an error of their
    own) checks the kernels, not the caller's context, and the checkpointed call has the reference's
    gradients."""
    from torch.utils.checkpoint import checkpoint

    x = (torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(3)) * 0.9 + 0.6).requires_grad_()
    grads = []
    for backend in ("cpu", "reference"):
        neuron = build_neuron("arlif", backend=backend)
        with torch.no_grad():
            neuron.alpha.fill_(1.3), neuron.beta_raw.fill_(0.2)
        spikes = checkpoint(lambda t: neuron(t * 2), x, use_reentrant=False)
        spikes.backward(torch.linspace(-1, 1, spikes.numel()).view_as(spikes))
        grads.append((x.grad.clone(), neuron.alpha.grad, neuron.beta_raw.grad))
        x.grad = None
    for got, ref in zip(*grads):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_a_first_call_without_grad_mode_passes_the_check(fresh_verdicts, mode):
    """The check's own thread starts from PyTorch's defaults (grad mode on, no inference mode), so a
    neuron's first call under `torch.inference_mode` or `torch.no_grad` checks the kernels and runs them."""
    enter = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad}[mode]
    x = torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(4)) * 0.9 + 0.6
    fused, reference = build_neuron("arlif", backend="cpu"), build_neuron("arlif", backend="reference")
    with enter():
        assert torch.equal(fused(x), reference(x))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard is installed only where no CUDA device is")
def test_the_callers_thread_installs_the_no_op_cuda_guard_before_the_checks_thread(monkeypatch):
    """torch 2.11 kept the no-op CUDA device guard of a machine without a GPU in the storage of the thread that
    first installed it: the check's thread would leave it dangling, and the caller's next torch.compile crashed
    (SIGSEGV; reproduced with torch 2.11 on this machine).  The caller's thread must install it first."""
    threads = []
    install = torch._C._ensureCUDADeviceGuardSet

    def recorded():
        threads.append(threading.get_ident())
        install()
    monkeypatch.setattr(torch._C, "_ensureCUDADeviceGuardSet", recorded)
    selfcheck.isolated(lambda: torch._C._ensureCUDADeviceGuardSet())  # as a compiled check's trace does
    assert len(threads) == 2 and threads[0] == threading.get_ident() != threads[1]


def test_explicit_backend_error_ends_train_py_with_one_line(tmp_path):
    """A real training run whose fused CPU engine flips a spike: `neuron.backend=cpu` exits 2."""
    code = ("import runpy, sys; sys.path.insert(0, 'tests'); import kernel_faults; kernel_faults.install('spike')\n"
            f"sys.argv = ['train.py', 'hydra.run.dir={tmp_path / 'run'}', 'dataset=synthetic', 'model=quickcnn', "
            "'logger=none', 'trainer.epochs=1', 'batch_size=8', 'dataset.image_size=8', 'dataset.train_size=16', "
            "'dataset.test_size=8', 'trainer.num_workers=0', 'T=2', 'neuron.backend=cpu']\n"
            "runpy.run_path('train.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fused cpu neuron kernel failed its self-check" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_run_cli_prints_the_check_error(faulty_cpu, capsys):
    faulty_cpu("spike")
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: build_neuron("lif_soft", backend="cpu")(torch.randn(4, 10)))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the fused cpu neuron kernel failed its self-check") and err.count("\n") == 1


@pytest.mark.skipif(not TRITON, reason="Triton's interpreter runs on CPU only")
def test_triton_engine_passes_under_the_interpreter():
    """The real Triton engine passes (tests/test_kernels.py runs every other case through it too)."""
    from arlif.kernels import triton_neuron

    alpha, beta = torch.tensor(1.0, requires_grad=True), torch.tensor(0.0, requires_grad=True)
    assert selfcheck.passes("triton", triton_neuron, torch.device("cpu"), NeuronSpec("adaptive"), torch.float32,
                            selfcheck.gradients_wanted(alpha, beta), explicit=True)


@pytest.mark.skipif(not TRITON, reason="Triton's interpreter runs on CPU only")
def test_triton_launch_error_and_mismatch():
    from arlif.kernels import triton_neuron

    cpu, spec, grads = torch.device("cpu"), NeuronSpec("hard"), (False, False)
    with pytest.warns(RuntimeWarning, match=r"fused triton neuron kernel .* it failed to run \(\w+"):
        assert not selfcheck.passes("triton", Faulty(triton_neuron, "launch"), cpu, spec, torch.float32, grads,
                                    explicit=False)
    with pytest.raises(KernelCheckError, match=r"hard reset.*float16.*gradient for x is off by 0.01"):
        selfcheck.passes("triton", Faulty(triton_neuron, "grad_x"), cpu, spec, torch.float16, grads,
                         explicit=True)


def kernel_module_process(checkout: Path, extensions: Path, code: str, python: str = sys.executable):
    """A `python` process that runs `code` with `cpu`, the kernel module of the arlif package in
    `checkout` (by path, which skips the package's heavier imports), logging at INFO."""
    setup = ("import importlib.util, logging; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
             "spec = importlib.util.spec_from_file_location('cpu', 'arlif/kernels/cpu.py')\n"
             "cpu = importlib.util.module_from_spec(spec); spec.loader.exec_module(cpu)\n")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)}
    return subprocess.Popen([python, "-c", setup + code], cwd=checkout, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def load_in_checkout(checkout: Path, extensions: Path, python: str = sys.executable) -> subprocess.Popen:
    """A process that loads the CPU kernel and prints the library's path."""
    return kernel_module_process(checkout, extensions, "assert cpu.load() is not None; print(cpu.load().__file__)",
                                 python)


def environment(folder: Path, own_torch: bool = False) -> str:
    """A real virtual environment that sees this one's packages (--system-site-packages); its python.

    `own_torch`: with a torch installation of its own, at another path inside the environment (a link to
    this torch's folder, so nothing is copied): to the compiler an install elsewhere, as a pip-installed
    torch in another environment is.
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    if own_torch:
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        (Path(site) / "torch").symlink_to(Path(torch.__file__).parent, target_is_directory=True)
    return str(python)


def copy_checkout(tmp_path: Path, name: str) -> Path:
    shutil.copytree(REPO / "arlif", tmp_path / name / "arlif", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / name


def test_another_checkout_reuses_the_build(tmp_path):
    """A copy of the package elsewhere loads the build this checkout already has: no rebuild."""
    assert cpu_engine.load() is not None
    library = cpu_engine.build_dir() / f"{cpu_engine.build_name()}.so"
    stamp = library.stat().st_mtime_ns
    proc = load_in_checkout(copy_checkout(tmp_path, "other"), cpu_engine.build_dir().parent)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.strip() == str(library)
    assert "building" not in err, err
    assert library.stat().st_mtime_ns == stamp


@pytest.mark.slow  # another checkout's reuse stays in the default suite
def test_environments_share_a_torch_installs_build_and_another_install_gets_its_own(tmp_path):
    """A second environment with this torch loads this build without rebuilding; one with a torch installed
    elsewhere names another build (not built here: the slow test below builds both)."""
    assert cpu_engine.load() is not None
    library = cpu_engine.build_dir() / f"{cpu_engine.build_name()}.so"
    stamp = library.stat().st_mtime_ns
    shared, own = environment(tmp_path / "shared"), environment(tmp_path / "own", own_torch=True)
    proc = load_in_checkout(REPO, cpu_engine.build_dir().parent, python=shared)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.strip() == str(library) and "building" not in err, err
    assert library.stat().st_mtime_ns == stamp
    proc = kernel_module_process(REPO, cpu_engine.build_dir().parent, "print(cpu.build_dir())", python=own)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert Path(out.strip()).parent == cpu_engine.build_dir().parent and out.strip() != str(cpu_engine.build_dir())


@pytest.mark.slow
def test_two_torch_installs_get_two_builds_that_never_rebuild_each_other(tmp_path):
    """A cold cache: an environment with a torch of its own builds, this environment builds its own, and
    the first then loads its build again unchanged (a shared name would make ninja recompile it)."""
    extensions = tmp_path / "extensions"
    own = environment(tmp_path / "own", own_torch=True)
    libraries = []
    for python in (own, sys.executable):
        proc = load_in_checkout(REPO, extensions, python)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "building" in err, err
        libraries.append(Path(out.strip()))
    assert libraries[0] != libraries[1]
    stamps = [library.stat().st_mtime_ns for library in libraries]
    for python, library in zip((own, sys.executable), libraries):
        proc = load_in_checkout(REPO, extensions, python)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "building" not in err, err
        assert Path(out.strip()) == library
    assert [library.stat().st_mtime_ns for library in libraries] == stamps


@pytest.mark.slow
def test_first_build_is_announced_and_shared(tmp_path):
    """A cold extension cache: the first checkout builds (and says so, before and after), the second
    loads that build; a changed source gets a build of its own."""
    extensions = tmp_path / "extensions"
    one, two = copy_checkout(tmp_path, "one"), copy_checkout(tmp_path, "two")
    proc = load_in_checkout(one, extensions)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert any(line.startswith("arlif: building the fused CPU neuron kernel") and "once per machine" in line
               and "takes about" in line for line in lines), err
    assert any(line.startswith("arlif: built the fused CPU neuron kernel in") for line in lines), err
    proc = load_in_checkout(two, extensions)
    again, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "building" not in err, err
    assert again == out
    cpp = two / "arlif" / "kernels" / "cpu_neuron.cpp"
    cpp.write_text(cpp.read_text() + "\n// changed\n")
    proc = load_in_checkout(two, extensions)
    changed, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "building" in err, err
    assert changed != out


def test_the_check_input_spans_two_blocks_the_second_ragged():
    """On a GPU and under Triton's interpreter alike, the check's neurons fill one block of the Triton launch
    and part of a second, and end inside a SIMD vector of the C++ kernel (8 or 16 floats)."""
    from arlif.kernels import triton_neuron

    for neurons, block in ((math.prod(selfcheck.GPU_MAP), triton_neuron.GPU_OPTIONS["BLOCK"]),
                           (math.prod(selfcheck.INTERPRETER_MAP), triton_neuron.INTERPRETER_OPTIONS["BLOCK"])):
        assert block < neurons < 2 * block and neurons % 8 != 0, (neurons, block)
