#!/usr/bin/env bash
# One-shot GPU check of the fused neuron kernels, for a machine with a CUDA device:
#   1. tests/test_kernels.py with the Triton kernel on CUDA (identical spikes, gradients
#      within 1e-5, exact ties through β·tanh(i) with libdevice, fp16/bf16, saved memory);
#   2. scripts/bench_neurons.py on CUDA: layer table with the kernel's share of memory
#      bandwidth (plus N = 16M, where launch overhead no longer hides it) and ResNet-18
#      training throughput with reference versus Triton neurons.
# Results go to $OUT (or ./gpu_check_out): tests.log, bench_cuda.md, nvidia-smi.txt.
# Each part runs under a timeout (180 s + 330 s), to fit a 10-minute device session.
# Usage: bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
python -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/nvidia-smi.txt" || exit 1

# The Triton tests, on CUDA here; the CPU kernel is covered by CI.
timeout 180 python -m pytest tests/test_kernels.py -q -p no:cacheprovider -k triton \
    2>&1 | tee "$out/tests.log"
tests_rc=${PIPESTATUS[0]}

timeout 330 python scripts/bench_neurons.py --device cuda --T 4 8 16 --N 262144 2097152 16777216 \
    --batch 64 --steps 10 --out "$out/bench_cuda.md" 2>&1 | tail -n 80
bench_rc=${PIPESTATUS[0]}

echo "tests exit code: $tests_rc, benchmark exit code: $bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
