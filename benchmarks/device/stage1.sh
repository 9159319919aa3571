#!/usr/bin/env bash
# GPU session, call 1 of 2 (see README.md, "SmolLM2 in two calls"): install the carried wheels, keep the
# first half of the SmolLM2 GGUF on the machine, then (a) the torch tests on CUDA and (b) layer_floor.
# Carry: .gpu/wheels .gpu/janeaustenr .gpu/a  (about 60 MiB with the working tree).
set -u -o pipefail
OUT=${OUT:-$PWD/out/stage1}; mkdir -p "$OUT"; LOG=$OUT/stage1.log; : >"$LOG"
export PYTHONUNBUFFERED=1
mkdir -p /tmp/gpu && cp -r .gpu/a .gpu/janeaustenr /tmp/gpu/ || echo "copy to /tmp/gpu failed" | tee -a "$LOG"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu/site \
    .gpu/wheels/*.whl 2>&1 | tail -3 | tee -a "$LOG"
export PYTHONPATH=/tmp/gpu/site:$PWD
{
    date -u +%Y-%m-%dT%H:%M:%SZ; git rev-parse --short HEAD 2>/dev/null
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
    python3 -c "import torch, transformers, gguf, rdata; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0), '| transformers', transformers.__version__, '| gguf', gguf.__version__ if hasattr(gguf, '__version__') else '?')"
} 2>&1 | tee -a "$LOG"
t0=$SECONDS
timeout --kill-after=5 100 env PTQTHEORY_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider --tb=short -rfE \
    tests/test_torch_backend.py tests/test_torch_bounds.py 2>&1 | tee -a "$LOG" | tail -25
echo "=== tests: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$LOG"
t0=$SECONDS
timeout --kill-after=5 130 python3 benchmarks/layer_floor.py --device cuda --out "$OUT" 2>&1 | tee -a "$LOG" | tail -30
echo "=== layer_floor: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$LOG"
