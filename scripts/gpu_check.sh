#!/usr/bin/env bash
# One-shot GPU check for a machine with one CUDA device, within 8 minutes (each part has a timeout):
#   1. tests on CUDA (180 s): the Triton kernel against the reference loop (tests/test_kernels.py -k
#      triton: identical spikes, gradients within 1e-5, exact ties through β·tanh(i) with libdevice,
#      fp16/bf16, saved memory); torch.compile of a small ResNet and VGG with Triton, compiled and
#      reference neurons against eager, and opcheck of the custom operators (tests/test_compile.py);
#      the compiled step loop through Inductor's Triton backend (tests/test_compiled_backend.py).
#      The CPU engine's tests are left to CI (no C++ kernel build here).
#   2. the neuron table (100 s): T = 4 at N = 2M and 16M neurons per step, AR-LIF, soft LIF and PLIF on
#      their eager loop, compiled loop and fused kernel, with the Triton kernel's effective memory
#      bandwidth (the bytes it must move per forward+backward over its time) and its share of the
#      device's copy bandwidth, measured in the same run.
#   3. the network table (180 s): ResNet-18, B = 128, T = 4, fp16 autocast, fused Triton neurons,
#      eager versus torch.compile (the first, compiling step shown apart).
# Results go to $OUT when set (else ./gpu_check_out): nvidia-smi.txt, tests.log, layers.md, network.md.
# Usage: bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
unset TRITON_INTERPRET  # the real kernels, not the interpreter

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
python -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/nvidia-smi.txt" || exit 1

timeout 180 python -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_compile.py \
    tests/test_compiled_backend.py -k "(triton or compile) and not trace and not cpu" --durations=10 2>&1 | tee "$out/tests.log"
tests_rc=${PIPESTATUS[0]}

timeout 100 python scripts/bench_neurons.py --device cuda --T 4 --N 2097152 16777216 \
    --neurons arlif lif_soft plif --repeats 7 --no-network --out "$out/layers.md" 2>&1 | tail -n 30
layers_rc=${PIPESTATUS[0]}

timeout 180 python scripts/bench_neurons.py --device cuda --no-layers --batch 128 --steps 10 --amp fp16 \
    --network-backends fused --out "$out/network.md" 2>&1 | tail -n 12
network_rc=${PIPESTATUS[0]}

echo "exit codes: tests $tests_rc, layer table $layers_rc, network table $network_rc (124: timed out)" \
    | tee "$out/exit_codes.txt"
[ "$tests_rc" -eq 0 ] && [ "$layers_rc" -eq 0 ] && [ "$network_rc" -eq 0 ]
