#!/usr/bin/env bash
# Rehearse scripts/gpu_check.sh on a machine without a GPU, with the GPU machines' software, so that a lent
# GPU's few minutes are not spent on an incompatibility.  The GPU machines run torch 2.11.0 and triton 3.6.0
# on Python 3.12 (docs/benchmarks.md); CI pins torch 2.14.1.  In a virtual environment of its own (default
# ${TMPDIR:-/tmp}/arlif-gpu-env, made on first use: about 5 GB of wheels from PyPI) this
#   1. builds every Triton kernel for sm_90 (python -m arlif.kernels.aot --arch 90: the GPU's compiler path);
#   2. builds the fused C++ kernel against that torch;
#   3. runs the default test suite (the Triton kernels through triton 3.6's interpreter);
#   4. runs scripts/bench_step.py with each of gpu_check.sh's variants at a tiny shape on the CPU.
# numpy stays below 2.4 there: triton 3.6's interpreter converts 1-element arrays to ints, which numpy 2.4
# refuses.  TORCH, TORCHVISION, TRITON and PYTHON choose other versions.
# Usage: bash scripts/gpu_env_rehearsal.sh [VENV]
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${TMPDIR:-/tmp}/arlif-gpu-env}"
torch_v="${TORCH:-2.11.0}" vision_v="${TORCHVISION:-0.26.0}" triton_v="${TRITON:-3.6.0}"
python="${PYTHON:-}"
for candidate in python3.12 python3; do  # the GPU machines' Python where it runs here (a pyenv shim may not)
    [ -z "$python" ] && "$candidate" -c "" 2>/dev/null && python=$candidate
done

if [ ! -e "$venv/installed" ]; then  # made on first use; an install that broke off is redone
    "$python" -m venv "$venv" || exit 1
    # requirements.txt without its torch, torchvision and numpy (with the checkout itself, `-e .`)
    grep -vE '^(torch|torchvision|numpy)==' requirements.txt > "$venv/requirements-rest.txt"
    "$venv/bin/pip" install -q "torch==$torch_v" "torchvision==$vision_v" "triton==$triton_v" "numpy<2.4" \
        -r "$venv/requirements-rest.txt" || exit 1
    touch "$venv/installed"
fi
py="$venv/bin/python"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"

codes=()
step() {  # step NAME COMMAND...: runs it, keeps its exit code
    local name=$1
    shift
    echo "== $name"
    "$@"
    codes+=("$name ${?}")
}
step "kernels for sm_90" env -u TRITON_INTERPRET "$py" -m arlif.kernels.aot --arch 90 --jobs 2
step "C++ kernel" "$py" -c "from arlif.kernels import cpu; assert cpu.load() is not None, 'the C++ kernel did not build'"
step "default tests" "$py" -m pytest -q -p no:cacheprovider
tiny=(--model resnet18 --T 4 --batch 2 --precision fp16 --steps 1 --repeats 1 --warmup 1 --device cpu)
step "step: eager changes" "$py" scripts/bench_step.py "${tiny[@]}" --fused-optimizer --baseline --profile 1
step "step: channels_last" "$py" scripts/bench_step.py "${tiny[@]}" --fused-optimizer --channels-last
step "step: reduce-overhead" "$py" scripts/bench_step.py "${tiny[@]}" --fused-optimizer --compile reduce-overhead
presets=(--T 4 --batch 2 --precision fp16 --steps 1 --repeats 1 --warmup 1 --device cpu --fused-optimizer --baseline)
step "step: Tiny-ImageNet preset" "$py" scripts/bench_step.py --experiment table1/tiny_imagenet_vgg13_t4 --model vgg13 \
    "${presets[@]}"
step "step: CIFAR10-DVS preset" "$py" scripts/bench_step.py --experiment table1/cifar10_dvs_vggsnn_t4 --model vggsnn \
    "${presets[@]}"

printf '%s\n' "exit codes:" "${codes[@]}"
! printf '%s\n' "${codes[@]}" | grep -vq ' 0$'
