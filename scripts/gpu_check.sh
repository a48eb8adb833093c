#!/usr/bin/env bash
# One-shot GPU check for a machine with one CUDA device, within 4 minutes (every part has a timeout; they add
# up to 235 s), so that it fits one device call with room to rerun it:
#   1. tests on CUDA (40 s): the Triton kernel against the reference loop through the custom operators and
#      the eager fast path (β = tanh(b) inside the kernels), with channels_last and strided inputs, and the
#      opt-in register-replay backward (fast math in its reverse pass) at T = 8 within the tests' tolerances
#      (tests/test_kernels.py -k triton).
#   2. the training step, scripts/bench_step.py (issue 27), ResNet-18, B = 128, T = 4, fp16 + GradScaler,
#      the CIFAR-10 recipe's loss and SGD, synthetic batches:
#      a. before issue 27 (foreach SGD, batch norm looped over T, custom-op neuron call) against all eager
#         changes together (fused SGD, batched BN, lean call), round-robin, with a 3-step profile of each:
#         busy vs idle, kernels and host syncs per step, ms by kernel family (60 s);
#      b. the same eager step with channels_last (20 s);
#      c. trainer.compile=reduce-overhead with fused SGD: CUDA graphs, compile seconds apart (70 s).
#   3. the presets' shapes, before against the eager changes: Tiny-ImageNet VGG-13 T = 4 (64x64, 200
#      classes) and CIFAR10-DVS VGGSNN T = 4 (2x48x48 event frames) (15 s each).
#   4. the Triton kernels alone at T = 4 and 16, N = 16M, fp16 (bench_neurons.py --kernel-only: do_bench,
#      bytes in the real dtype, time against a copy of the minimum bytes), with the opt-in register-replay
#      backward beside the scratch backward at T = 4 and its gradients' difference from it (20 s).
# Results go to $OUT when set (else ./gpu_check_out): nvidia-smi.txt, tests.log, step_*.md, exit_codes.txt.
# Usage: bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
unset TRITON_INTERPRET  # the real kernels, not the interpreter
export PYTHONUNBUFFERED=1  # a part stopped by its timeout keeps what it had printed
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
python -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$out/nvidia-smi.txt" || exit 1

codes=()
run() {  # run NAME SECONDS COMMAND...: the command's output to $out/NAME and the terminal, its exit code kept
    local name=$1 seconds=$2
    shift 2
    timeout "$seconds" "$@" 2>&1 | tee "$out/$name" | tail -n 40
    codes+=("$name ${PIPESTATUS[0]}")
}

run tests.log 40 python -m pytest -q -p no:cacheprovider tests/test_kernels.py \
    -k "(triton and (layouts or matches_reference or half)) or squashes or (register_replay_backward and adaptive and 8)"
R18=(--model resnet18 --T 4 --batch 128 --precision fp16 --steps 10 --repeats 3 --warmup 3)
run step_resnet18_eager.md 55 python scripts/bench_step.py "${R18[@]}" --fused-optimizer --baseline --profile 3
run step_resnet18_channels_last.md 20 python scripts/bench_step.py "${R18[@]}" --fused-optimizer --channels-last
run step_resnet18_reduce_overhead.md 70 python scripts/bench_step.py "${R18[@]}" --fused-optimizer --compile reduce-overhead
run step_tiny_imagenet.md 15 python scripts/bench_step.py --experiment table1/tiny_imagenet_vgg13_t4 --model vgg13 \
    --T 4 --batch 64 --precision fp16 --steps 5 --repeats 3 --fused-optimizer --baseline
run step_cifar10_dvs.md 15 python scripts/bench_step.py --experiment table1/cifar10_dvs_vggsnn_t4 --model vggsnn \
    --T 4 --batch 64 --precision fp16 --steps 5 --repeats 3 --fused-optimizer --baseline
run kernels.md 20 python scripts/bench_neurons.py --device cuda --kernel-only --T 4 16 --N 16777216 --dtype fp16 \
    --register-replay

printf '%s\n' "exit codes (124: timed out):" "${codes[@]}" | tee "$out/exit_codes.txt"
! printf '%s\n' "${codes[@]}" | grep -vq ' 0$'
