"""Fused neuron backends against the reference loop: identical spikes, gradients for x,
α and β within 1e-5 relative, at odd sizes, at exact threshold and surrogate-edge ties,
and with a sixth of the saved memory.

The Triton kernel runs on CUDA when there is one and otherwise on the CPU through
Triton's interpreter (TRITON_INTERPRET=1, set by tests/conftest.py before triton is first
imported).  The interpreter has no libdevice, so ties that go through a transcendental
(β ≠ 0) are checked for Triton on CUDA only; see docs/kernels.md.
"""

import pytest
import torch

from arlif import kernels
from arlif.errors import ConfigError
from arlif.kernels import cpu as cpu_engine
from arlif.neurons import NEURONS, build_neuron

CUDA = torch.cuda.is_available()  # without it, tests/conftest.py sets TRITON_INTERPRET=1

DEVICE = {"cpu": "cpu", "triton": "cuda" if CUDA else "cpu"}
FUSED = ["cpu", "triton"] if kernels.triton_installed() else ["cpu"]


def make(name, backend, device, alpha=1.4, beta_raw=0.3):
    """A neuron whose learnable scalars are moved off their special initial values."""
    neuron = build_neuron(name, backend=backend).to(device)
    with torch.no_grad():
        for pname, value in (("alpha", alpha), ("beta_raw", beta_raw)):
            p = getattr(neuron, pname, None)
            if isinstance(p, torch.nn.Parameter):
                p.fill_(value)
    return neuron


def run(neuron, x, grad):
    """Spikes and the gradients of <spikes, grad> for x, α and β_raw (0 when unused)."""
    x = x.clone().requires_grad_()
    spikes = neuron(x)
    spikes.backward(grad)
    scalars = {}
    for pname in ("alpha", "beta_raw"):
        p = getattr(neuron, pname, None)
        if isinstance(p, torch.nn.Parameter):
            scalars[pname] = p.grad if p.grad is not None else torch.zeros_like(p)
    return spikes, x.grad, scalars


def assert_same(name, backend, x, grad, **scalars):
    device = DEVICE[backend]
    x, grad = x.to(device), grad.to(device)
    ref = run(make(name, "reference", device, **scalars), x, grad)
    got = run(make(name, backend, device, **scalars), x, grad)
    assert torch.equal(got[0], ref[0]), f"{(got[0] != ref[0]).sum().item()} spikes differ"
    atol = 1e-5 * ref[1].abs().max().item()  # floor for entries that cancel to ~0
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=atol)
    assert got[2].keys() == ref[2].keys()
    for pname in ref[2]:
        torch.testing.assert_close(got[2][pname], ref[2][pname], rtol=1e-5, atol=1e-7)


def inputs(shape, seed):
    """Currents spread over the firing range, a quarter of them on a 1/8 grid (exact ties)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * 0.9 + 0.6
    grid = torch.randint(-4, 20, shape, generator=gen).float() / 8
    x = torch.where(torch.rand(shape, generator=gen) < 0.25, grid, x)
    return x, torch.randn(shape, generator=gen)


def test_cpu_kernel_builds():
    assert cpu_engine.load() is not None, "the fused CPU kernel failed to build"


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("T", [1, 4, 8])
@pytest.mark.parametrize("name", [n for n in NEURONS if build_neuron(n, channels=1, T=4).fused_kernel])
def test_matches_reference(name, T, backend):
    x, grad = inputs((T, 3, 37, 5), seed=T)  # 555 neurons: not a multiple of any block
    assert_same(name, backend, x, grad)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("name", ["arlif", "arlif_fixed_threshold", "lif_hard", "lif_soft"])
def test_exact_ties_match(name, backend):
    """z = h - Vth lands exactly on 0 and ±a/2 (dyadic currents, Vth = 1): same Θ and window."""
    T = 6
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(-8, 24, (T, 1000), generator=gen).float() / 16
    grad = torch.randn(x.shape, generator=gen)
    assert_same(name, backend, x, grad, beta_raw=0.0)
    probe = make(name, "reference", "cpu", beta_raw=0.0)
    probe.store_v = True
    probe(x)
    z = probe.states["h"] - 1.0
    assert (z == 0).sum() > 20 and (z.abs() == 0.5).sum() > 20, "no ties were exercised"


def tie_currents(beta_raw: float, device: str, targets=(0.0, 0.5, -0.5)):
    """fp32 currents i with i - (1 + β·tanh(i)) == target exactly, computed on `device`
    the way the reference computes it there (β = tanh(beta_raw))."""
    b = torch.tanh(torch.tensor(beta_raw, device=device))
    hits = []
    for target in targets:
        guess = torch.tensor(1.0 + target, dtype=torch.float64)
        for _ in range(30):  # Newton on i - 1 - β·tanh(i) - target in float64
            f = guess - 1 - b.double().cpu() * torch.tanh(guess) - target
            guess = guess - f / (1 - b.double().cpu() * (1 - torch.tanh(guess) ** 2))
        cand = guess.float() * (1 + torch.arange(-200, 201) * torch.finfo(torch.float32).eps)
        cand = cand.to(device)
        z = cand - (1.0 + b * torch.tanh(cand))
        hits.append(cand[z == target].cpu())
    return torch.cat(hits)


@pytest.mark.parametrize("backend", ["cpu"] + (["triton"] if CUDA and "triton" in FUSED else []))
def test_ties_through_adaptive_threshold(backend):
    """Ties with β ≠ 0 need tanh to the bit; placed after silent steps so that h = i."""
    beta_raw = 0.3
    ties = tie_currents(beta_raw, DEVICE[backend])
    assert len(ties) >= 3
    T, N = 5, 300
    gen = torch.Generator().manual_seed(3)
    x = torch.zeros(T, N)  # zero current never fires (z = -1), leaving u = 0
    slot = torch.randint(0, T, (N,), generator=gen)
    x[slot, torch.arange(N)] = ties[torch.randint(0, len(ties), (N,), generator=gen)]
    later = torch.arange(T)[:, None] > slot[None, :]
    x = torch.where(later, torch.randn(T, N, generator=gen) + 0.6, x)
    assert_same("arlif", backend, x, torch.randn(T, N, generator=gen), beta_raw=beta_raw)


def test_cpu_reruns_uncertain_decisions_with_exact_tanh():
    """The CPU forward takes tanh from a fast SLEEF routine and reruns, with at::tanh, every
    SIMD vector with a spike or window bit it cannot certify (docs/kernels.md): exact ties
    always rerun, random currents rarely."""
    ext = cpu_engine.load()
    beta = torch.tanh(torch.tensor(0.3)).item()
    ties = tie_currents(0.3, "cpu")
    x = torch.zeros(3, 64 * len(ties))
    x[1, ::64] = ties  # one tie in each of len(ties) separate vectors, after a silent step
    *_, reruns = ext.forward(x, 2, 0.5, 1.0, 1.0, 1.4, beta)
    assert reruns == len(ties)
    x = torch.randn(4, 1 << 16, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.6
    *_, reruns = ext.forward(x, 2, 0.5, 1.0, 1.0, 1.4, beta)
    assert reruns < 0.01 * x.shape[1] / 16  # under 1% of the (16-lane AVX-512) vectors


def test_cpu_many_blocks_and_threads():
    """Large enough for several parallel work items and a ragged last block."""
    x, grad = inputs((4, 70001), seed=11)
    assert_same("arlif", "cpu", x, grad)


def saved_bytes(fn) -> int:
    """Bytes of distinct storages autograd keeps for backward while `fn` builds its graph."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("name, ratio", [("arlif", 6), ("lif_hard", 2), ("lif_soft", 4)])
def test_saved_memory_fraction_of_reference(name, ratio, backend):
    """AR-LIF keeps at most a sixth of the reference's saved bytes; LIF less than it too."""
    device = DEVICE[backend]
    x = (torch.randn(4, 8192) + 0.5).to(device).requires_grad_()
    ref = saved_bytes(lambda: make(name, "reference", device)(x))
    fused = saved_bytes(lambda: make(name, backend, device)(x))
    assert fused * ratio <= ref, (fused, ref)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_in_and_out(backend, dtype):
    device = DEVICE[backend]
    x, grad = inputs((4, 2, 33), seed=5)
    x, grad = x.to(device, dtype), grad.to(device, dtype)
    got = run(make("arlif", backend, device), x, grad)
    ref = run(make("arlif", "reference", device), x, grad)  # fp32 math on the same fp16 values
    assert got[0].dtype == dtype and got[1].dtype == dtype
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
    torch.testing.assert_close(got[2]["alpha"], ref[2]["alpha"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, wanted", [("arlif", (True, True)), ("arlif_fixed_alpha", (False, True)),
                                         ("arlif_fixed_threshold", (True, False)),
                                         ("arlif_fixed_both", (False, False))])
def test_gradients_only_for_learnable_scalars(monkeypatch, name, wanted):
    asked = []
    real_backward = cpu_engine.backward

    def spy(*args):
        asked.append(tuple(args[6:8]))  # grad_alpha, grad_beta
        return real_backward(*args)

    monkeypatch.setattr(cpu_engine, "backward", spy)
    neuron = make(name, "cpu", "cpu")
    neuron.eager_fast_path = False  # the custom operators' path; the C++ eager node is checked by value above
    run(neuron, *inputs((3, 50), seed=2))
    assert asked and set(asked) == {wanted}  # the self-check, if it runs, asks the same


def test_backend_resolution(monkeypatch):
    assert kernels.resolve_backend("auto", torch.device("cpu")) == "cpu"
    assert kernels.resolve_backend("reference", torch.device("cpu")) == "reference"
    assert kernels.resolve_backend("auto", torch.device("cpu"), fused_kernel=False) == "compiled"
    assert kernels.resolve_backend("compiled", torch.device("cpu")) == "compiled"
    assert kernels.resolve_backend("auto", torch.device("mps"), fused_kernel=False) == "reference"
    with pytest.raises(ConfigError, match="backend 'compiled' needs a CPU, or CUDA with triton"):
        kernels.resolve_backend("compiled", torch.device("mps"))
    with pytest.raises(ConfigError, match="backend 'cpu' needs CPU tensors"):
        kernels.resolve_backend("cpu", torch.device("cuda"))
    with pytest.raises(ConfigError, match="must be one of"):
        kernels.resolve_backend("fast", torch.device("cpu"))
    if kernels.triton_installed():
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ConfigError, match="runs on CUDA tensors"):
            kernels.resolve_backend("triton", torch.device("cpu"))


def test_failed_build_falls_back_with_one_warning(monkeypatch):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension 'arlif_neuron_cpu'")

    monkeypatch.setattr(cpp_extension, "load", broken)
    cpu_engine.load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="falling back"):
            assert cpu_engine.load() is None
    finally:
        cpu_engine.load.cache_clear()


def channels_last_input(seed):
    """[T, B, C, H, W] currents whose steps are channels_last: dense, steps outermost, not contiguous."""
    x, grad = inputs((3, 2, 5, 4, 3), seed=seed)
    cl = lambda t: t.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, t.shape[:2])  # noqa: E731
    return cl(x), cl(grad)


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("path", ["eager", "custom-op"])
def test_layouts_kept_and_values_equal(backend, path):
    """Any dense input whose dim 0 is T keeps its strides in spikes and grad_x, with the reference's
    values; a strided one (steps not outermost, or gaps between steps) gives contiguous results; on the
    eager fast path and through the custom operators alike."""
    device = DEVICE[backend]
    x_cl, g_cl = channels_last_input(seed=13)
    strided = inputs((2, 3, 4, 5), seed=14)[0].transpose(0, 1)  # [T=3, 2, 4, 5], steps not outermost
    gaps, _ = inputs((3, 2, 4, 5), seed=15)
    same = lambda t: t * 1  # noqa: E731  (keeps t's layout; a non-leaf, so the hook below sees its gradient)
    spaced = lambda t: torch.stack([t, torch.zeros_like(t)], 1).flatten(0, 1)[::2]  # noqa: E731  gaps between steps
    for x, grad, layer_input, strides in (
            (x_cl, g_cl, same, x_cl.stride()), (x_cl, g_cl.contiguous(), same, x_cl.stride()),
            (strided, torch.ones_like(strided), same, strided.contiguous().stride()),
            (gaps, torch.ones_like(gaps), spaced, gaps.stride())):
        x, grad = x.to(device), grad.to(device)
        neuron = make("arlif", backend, device)
        neuron.eager_fast_path = path == "eager"
        grad_strides = []  # of grad_x as the neuron's backward returns it, before autograd accumulates it
        neuron.register_forward_pre_hook(lambda _m, args: args[0].register_hook(
            lambda g: grad_strides.append(g.stride())) and None)
        got = run(lambda t: neuron(layer_input(t)), x, grad)
        got = (got[0], got[1], {p: getattr(neuron, p).grad for p in ("alpha", "beta_raw")})
        ref = run(make("arlif", "reference", device), x, grad)
        assert got[0].stride() == strides and grad_strides == [strides]
        assert torch.equal(got[0], ref[0])
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-5 * ref[1].abs().max().item())
        for pname in ref[2]:
            torch.testing.assert_close(got[2][pname], ref[2][pname], rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # torch's make_dual, first use
@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("name", ["arlif", "lif_soft"])
def test_the_eager_call_keeps_autograds_rules(backend, name):
    """The eager fast path's autograd node (the C++ engine's own node) behaves as any PyTorch operator:
    a second backward needs retain_graph and then repeats the gradients, a saved input changed in place
    refuses the backward, forward-mode AD is refused with a message, and without grad mode no node is made."""
    import torch.autograd.forward_ad as fwAD

    device = DEVICE[backend]
    neuron = make(name, backend, device)
    x, grad = (t.to(device) for t in inputs((4, 2, 3, 5), seed=21))
    x.requires_grad_()
    spikes = neuron(x)
    spikes.backward(grad, retain_graph=True)
    first, x.grad = x.grad.clone(), None
    spikes.backward(grad)
    assert torch.equal(x.grad, first) and first.abs().sum() > 0
    with pytest.raises(RuntimeError, match="second time"):
        spikes.backward(grad)
    if name == "arlif":  # the soft reset's backward needs no x, so keeps none
        layer_input = x * 1
        spikes = neuron(layer_input)
        layer_input.add_(1)
        with pytest.raises(RuntimeError, match="modified (by an )?inplace"):
            spikes.backward(grad)
    with torch.no_grad():
        assert neuron(x).grad_fn is None
    with fwAD.dual_level(), pytest.raises(RuntimeError, match="forward.mode"):
        neuron(fwAD.make_dual(x.detach(), torch.ones_like(x)))


def test_fake_strides_agree_with_the_real_operators():
    """The custom operators' shape functions promise the strides the real operators return."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from arlif.kernels.function import neuron_backward, neuron_forward

    kernels.choose_engine("cpu", torch.device("cpu"), torch.float32, make("arlif", "cpu", "cpu").spec.constants, (True, True))
    x = torch.randn(4, 10)
    grad = torch.randn(10, 4).t()  # non-contiguous gradient rows
    alpha, beta = torch.tensor(1.0), torch.tensor(0.2)
    consts = ("cpu", "adaptive", 0.5, 1.0, 1.0)
    spikes, flags = neuron_forward(x, alpha, beta, *consts)
    real = (spikes, flags, *neuron_backward(x, flags, grad, alpha, beta, *consts, True, True))
    with FakeTensorMode() as mode:
        fx, fgrad, fa, fb = (mode.from_tensor(t) for t in (x, grad, alpha, beta))
        fs, ff = neuron_forward(fx, fa, fb, *consts)
        fake = (fs, ff, *neuron_backward(fx, ff, fgrad, fa, fb, *consts, True, True))
    assert [(t.shape, t.stride(), t.dtype) for t in fake] == [(t.shape, t.stride(), t.dtype) for t in real]


def test_engine_chosen_once_per_case(monkeypatch):
    """The engine is chosen (and self-checked) once per module and case, not on every call."""
    neuron = make("arlif", "cpu", "cpu")
    x, _ = inputs((4, 20), seed=3)
    neuron(x)
    calls = []
    monkeypatch.setattr(kernels, "choose_engine", lambda *a: calls.append(a))
    neuron(x)
    neuron(x.to(torch.bfloat16))  # another dtype: another case
    assert len(calls) == 1


# ----------------------------------------------------------------------------- the Triton engine's own variants
# β = tanh(b) inside the kernels (the eager call), and the opt-in register-replay backward for T ≤ 8 (issue 27).

TRITON_HERE = "triton" in FUSED


def engine_run(call, x, grad, reset, alpha=1.3, beta=0.3):
    """Spikes and the gradients of <spikes, grad> for x, α and β (or b) of `call(x, alpha, beta, spec)`."""
    from arlif.spikes.dynamics import NeuronSpec

    spec = NeuronSpec(reset)
    x = x.clone().requires_grad_()
    a = torch.tensor(alpha, device=x.device, requires_grad=True) if reset == "adaptive" else None
    b = torch.tensor(beta, device=x.device, requires_grad=True) if reset == "adaptive" else None
    spikes = call(x, a, b, spec)
    spikes.backward(grad)
    return spikes, x.grad, *((None, None) if a is None else (a.grad, b.grad))


def reference_call(squash):
    from arlif.spikes.dynamics import reference_multistep

    return lambda x, a, b, spec: reference_multistep(x.float(), spec, a, torch.tanh(b) if squash and b is not None
                                                     else b)[0].to(x.dtype)


def assert_engine_matches(got, ref, dtype):
    assert torch.equal(got[0], ref[0]), f"{(got[0] != ref[0]).sum().item()} spikes differ"
    if dtype == torch.float32:
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-5 * ref[1].abs().max().item())
    else:  # fp16 gradients: one rounding apart, as test_half_precision_in_and_out
        torch.testing.assert_close(got[1], ref[1])
    for mine, theirs in zip(got[2:], ref[2:]):
        if theirs is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not TRITON_HERE, reason="needs triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_squashes_beta_inside_its_kernels(dtype):
    """The eager Triton call takes the raw b: the kernels compute β = tanh(b), and dL/db = dL/dβ·(1 − β²), with
    no tanh op of their own; spikes and the gradients for x, α and b are the reference's with β = tanh(b)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from arlif.kernels import triton_neuron

    class Ops(TorchDispatchMode):
        seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    device = DEVICE["triton"]
    x, grad = (t.to(device, dtype) for t in inputs((4, 555), seed=21))
    with Ops() as ops:
        got = engine_run(lambda *a: triton_neuron.eager(*a, True), x, grad, "adaptive")
    assert not [op for op in ops.seen if "tanh" in op], "the eager call ran a tanh op of its own"
    ref = engine_run(reference_call(squash=True), x, grad, "adaptive")
    assert_engine_matches(got, ref, dtype)
    # dL/db is dL/dβ times tanh's derivative: a kernel that dropped the factor would return dL/dβ (8 % off here).
    given = engine_run(reference_call(squash=False), x, grad, "adaptive", beta=torch.tanh(torch.tensor(0.3)).item())
    torch.testing.assert_close(got[3], given[3] * (1 - torch.tanh(torch.tensor(0.3)) ** 2), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got[3], given[3], rtol=1e-2)


@pytest.fixture
def register_replay(monkeypatch):
    """The Triton engine with its register-replay backward on; records the STEPS of every planned backward."""
    from arlif.kernels import triton_neuron

    monkeypatch.setattr(triton_neuron, "REGISTER_REPLAY", True)
    steps = []
    real = triton_neuron.plan_backward

    def spy(*args, **kwargs):
        launch, *outputs = real(*args, **kwargs)
        steps.append(launch.kwargs["STEPS"])
        return launch, *outputs

    monkeypatch.setattr(triton_neuron, "plan_backward", spy)
    return steps


# Every reset, T and dtype: four cases by default that between them take each of the three, the rest `-m slow`.
REPLAY_DEFAULT = {("adaptive", 8, torch.float32), ("adaptive", 3, torch.float16), ("hard", 8, torch.float16),
                  ("soft", 1, torch.float32)}
REPLAY_CASES = [pytest.param(reset, T, dtype, marks=() if (reset, T, dtype) in REPLAY_DEFAULT else pytest.mark.slow)
                for reset in ("hard", "soft", "adaptive") for T in (1, 3, 8) for dtype in (torch.float32, torch.float16)]


@pytest.mark.skipif(not TRITON_HERE, reason="needs triton")
@pytest.mark.parametrize("reset,T,dtype", REPLAY_CASES)
def test_register_replay_backward_matches_reference(register_replay, reset, T, dtype):
    """x and the flags read once, the replay in registers: the reference's spikes and gradients (555 neurons:
    a ragged last block), through the eager call (β = tanh(b) inside) and with β given (custom operators)."""
    from arlif.kernels import triton_neuron

    device = DEVICE["triton"]
    x, grad = (t.to(device, dtype) for t in inputs((T, 555), seed=30 + T))
    for squash in (True, False) if reset == "adaptive" else (False,):
        got = engine_run(lambda *a: triton_neuron.eager(*a, squash), x, grad, reset)
        assert_engine_matches(got, engine_run(reference_call(squash), x, grad, reset), dtype)
    assert register_replay and set(register_replay) == {T}


@pytest.mark.skipif(not TRITON_HERE, reason="needs triton")
def test_register_replay_falls_back_past_eight_steps_and_allocates_no_scratch(register_replay):
    from arlif.kernels import triton_neuron
    from arlif.spikes.dynamics import NeuronSpec

    device = DEVICE["triton"]
    x, grad = (t.to(device) for t in inputs((9, 300), seed=9))
    got = engine_run(lambda *a: triton_neuron.eager(*a, True), x, grad, "adaptive")
    assert_engine_matches(got, engine_run(reference_call(True), x, grad, "adaptive"), torch.float32)
    assert register_replay == [0], "T = 9 takes the scratch backward"
    spec, alpha, beta = NeuronSpec("adaptive"), torch.tensor(1.3), torch.tensor(0.3)
    for T, scratch in ((8, False), (9, True)):
        xs = torch.empty(T, 300, dtype=torch.float16, device=device)
        _, _, flags = triton_neuron.plan_forward(xs, spec, alpha, beta)
        launch, grad_x, partials = triton_neuron.plan_backward(xs, flags, torch.empty_like(xs), spec, alpha, beta,
                                                               True, True)
        assert launch.kwargs["STEPS"] == (0 if scratch else T)
        arrays = [a for a in launch.args if isinstance(a, torch.Tensor) and a.dim() == 2 and a.shape[0] == T]
        assert (launch.args[4] is None) != scratch
        # x, flags, ∂L/∂s, grad_x, and on the scratch path its fp32 scratch: nothing else of the layer's size
        assert len(arrays) == 4 + scratch and all(a.dtype != torch.float32 for a in arrays[:4])


@pytest.mark.skipif(not TRITON_HERE, reason="needs triton")
def test_self_check_covers_the_backward_in_use(register_replay, fresh_verdicts):
    """A process that turns the register replay on gets that backward checked, at T = 4, and the scratch
    backward it falls back to past T = 8 too; the case differs from the one checked with the option off."""
    from arlif.kernels import selfcheck, triton_neuron

    cpu, spec, grads = torch.device(DEVICE["triton"]), build_neuron("lif_hard").spec, (False, False)
    triton_neuron.REGISTER_REPLAY = False
    assert selfcheck.passes("triton", triton_neuron, cpu, spec, torch.float32, grads, explicit=True)
    assert register_replay == [0, 0]  # the custom operators, then the eager call
    triton_neuron.REGISTER_REPLAY = True
    assert selfcheck.passes("triton", triton_neuron, cpu, spec, torch.float32, grads, explicit=True)
    assert register_replay == [0, 0, 4, 4, 0, 0] and len(selfcheck._verdicts) == 2
