#!/usr/bin/env bash
# One GPU check of ptqtheory on an H100/H200, under 8 minutes: run it through the device tool from the
# repository root (see benchmarks/device/README.md). Everything it prints goes to $OUT/gpu_check.log;
# the benchmarks' JSON files go to $OUT. At most 8 files come back from $OUT, so all step output
# shares one log.
#
#   (a) the torch backend tests with torch's default device set to CUDA (PTQTHEORY_TEST_DEVICE)
#   (b) benchmarks/layer_floor.py: 4096x4096, 11008x4096, 4096x11008 at m = 128 x 2048 (its CUDA defaults)
#   (c) ptqtheory validate --model smollm2 --device cuda (needs the converted SmolLM2 on the machine)
#   (d) benchmarks/llm_scale.py --device cuda --depths 1 2 (synthetic Llama-7B-shaped blocks from disk)
#
# Each step runs under `timeout`; a failed or timed-out step is recorded and the next one still runs.
# Step limits (s) sum to 440 s; nvidia-smi and the summary take seconds.
set -u -o pipefail

OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
PY=${PYTHON:-python3}            # the image's python3 holds CUDA PyTorch
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}   # the working tree, not an installed copy
export PYTHONUNBUFFERED=1
: >"$LOG"

declare -a SUMMARY=()
step() {  # step NAME LIMIT_S COMMAND...: run it under timeout, tee to the log, record rc and time
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $* (timeout ${limit}s) ===" | tee -a "$LOG"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t0))
    [ "$rc" -eq 124 ] && echo "!!! $name timed out after ${limit}s" | tee -a "$LOG"
    echo "=== $name: rc $rc, ${dt}s ===" | tee -a "$LOG"
    SUMMARY+=("$(printf '%-12s rc %3d  %4ds' "$name" "$rc" "$dt")")
}

{
    echo "ptqtheory gpu_check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi || echo "nvidia-smi failed"
    "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', \
'| transformers', transformers.__version__)"
} 2>&1 | tee -a "$LOG"

# (a) Tensors the tests build land on the GPU (tests/conftest.py reads PTQTHEORY_TEST_DEVICE); tests
# that compare with numpy copy to the host themselves. -p no:cacheprovider: the tree may be read-only.
step tests 110 env PTQTHEORY_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider --tb=short \
    -rfE tests/test_torch_backend.py tests/test_torch_bounds.py

# (b) The layer benchmark's CUDA defaults are the 7B shapes with m = 128 x 2048.
step layer_floor 120 "$PY" benchmarks/layer_floor.py --device cuda --out "$OUT"

# (c) SmolLM2 must already be converted on the machine (PTQTHEORY_CACHE; see README.md).
step validate 60 "$PY" -m ptqtheory.cli validate --model smollm2 --device cuda --out "$OUT/validate"

# (d) Two depths (3 blocks in all, to fit the limit), each in a fresh process; synthetic models in a
# temporary folder on local disk.
step llm_scale 150 "$PY" benchmarks/llm_scale.py --device cuda --depths 1 2 --out "$OUT"

{
    echo
    echo "=== summary ==="
    printf '%s\n' "${SUMMARY[@]}"
    nvidia-smi --query-gpu=name,memory.used,memory.total,temperature.gpu --format=csv || true
    echo "files in $OUT:"
    find "$OUT" -type f | sort
} 2>&1 | tee -a "$LOG"
