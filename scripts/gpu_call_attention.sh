#!/usr/bin/env bash
# Issue 13, seventh session (2026-11-26): the hand-written Triton attention kernel (kernels/attention.py).
#   tiles - run 22: the kernel's tiles against cuDNN's SDPA at every seed size and batch 16 x 480
#           (scripts/gpu_attention_kernel.py), then the model with the best tile beside the defaults
#           at 260/520/910, profiled, fidelity in the same process
#   six   - run 23: the defaults beside attention="triton" at all six sizes, profiled, fidelity
#   b16   - batch 16 x 480, the same two variants
#   lazy  - run 24: the lazy rescale in the kernel; batch 16 x 480; 260/520/910
set -u
. "$(dirname "$0")/gpu_env.sh"
best_tile() {  # the tile with the lowest geometric mean of time over cuDNN's across the shapes
  python3 - "$OUT/attention_tiles.json" <<'PY'
import json, math, sys
rows = json.load(open(sys.argv[1]))["shapes"].values()
tiles = set.intersection(*({k for k, v in r["tiles"].items() if "ms" in v} for r in rows))
score = {t: sum(math.log(r["tiles"][t]["ms"] / r["cudnn"]["ms"]) for r in rows) for t in tiles}
print(min(score, key=score.get))
PY
}
case "${1:-tiles}" in
tiles)
  timeout 240 python3 scripts/gpu_attention_kernel.py --deadline 200 2>&1 | noise | tee "$OUT/attention_tiles.log"
  TILE=${TILE:-$(best_tile)}; echo "model tile: $TILE"
  timeout 330 python3 scripts/gpu_levers.py --variants base,triton-attn --sizes 260 520 910 --e2e none \
    --profile base,triton-attn --trace triton-attn --attention-tile "$TILE" --deadline 250 --name attn 2>&1 | noise \
    | tee "$OUT/attn.log" | cut -c1-300
  ;;
six)  # two processes of three sizes each, so that each fits its timeout
  for SIZES in "260 390 520" "650 780 910"; do
    timeout 270 python3 scripts/gpu_levers.py --variants base,triton-attn --sizes $SIZES --e2e none \
      --profile base,triton-attn --deadline 150 --name "attn_six_${SIZES// /_}" 2>&1 | noise \
      | tee "$OUT/attn_six_${SIZES// /_}.log" | cut -c1-300
  done
  ;;
b16)
  timeout 200 python3 scripts/gpu_levers.py --variants base,triton-attn --sizes 480 --batch 16 --iterations 30 \
    --fp16-out --e2e none --profile base,triton-attn --deadline 120 --name attn_b16 2>&1 \
    | noise | tee "$OUT/attn_b16.log" | cut -c1-300
  ;;
lazy)  # run 24: the kernel with a lazy rescale beside the first version (a LAZY switch, `--lazy both` here;
        # the lazy rescale lost and was removed after this run), then the model at batch 16 x 480 (with the
        # lazy rescale) and at 260/520/910 (not reached: deadline); as written now it re-times the tiles only
  timeout 150 python3 scripts/gpu_attention_kernel.py --tiles 64,64,4,3 64,64,4,2 128,64,8,2 64,128,4,3 \
    128,64,8,3 128,128,8,3 --deadline 120 2>&1 | noise | tee "$OUT/attention_lazy.log"
  timeout 170 python3 scripts/gpu_levers.py --variants base,triton-attn --sizes 480 --batch 16 --iterations 30 \
    --fp16-out --e2e none --profile base,triton-attn --deadline 100 --name attn_b16 2>&1 \
    | noise | tee "$OUT/attn_b16.log" | cut -c1-300
  timeout 230 python3 scripts/gpu_levers.py --variants base,triton-attn --sizes 260 520 910 --e2e none \
    --profile base,triton-attn --trace triton-attn --deadline 120 --name attn_lazy 2>&1 | noise \
    | tee "$OUT/attn_lazy.log" | cut -c1-300
  ;;
diag)  # run 25: can Inductor compile the kernel itself (triton_op, what an AOTI package needs)? Then batch
       # 16 x 480 with the shipped kernel (the default since) beside SDPA
  timeout 150 python3 scripts/gpu_attention_inductor.py 2>&1 | tail -60 | tee "$OUT/inductor.log"
  timeout 200 python3 scripts/gpu_levers.py --variants base,sdpa --sizes 480 --batch 16 --iterations 30 \
    --fp16-out --e2e none --profile base,sdpa --deadline 120 --name attn_b16 2>&1 \
    | noise | tee "$OUT/attn_b16.log" | cut -c1-300
  ;;
final)  # run 26: Inductor compiles the shipped op (triton_op, the fp32 scale); the new defaults beside SDPA at
        # all six sizes, fidelity in the same process; the regression gate and ratio tests on the new defaults
  timeout 100 python3 scripts/gpu_attention_inductor.py 2>&1 | tail -40 | tee "$OUT/inductor.log"
  if grep -q FAILED "$OUT/inductor.log"; then echo "the op does not compile under Inductor: stop"; exit 1; fi
  for SIZES in "260 390 520" "650 780 910"; do
    timeout 220 python3 scripts/gpu_levers.py --variants base,sdpa --sizes $SIZES --e2e none \
      --profile base,sdpa --deadline 110 --name "final_${SIZES// /_}" 2>&1 | noise \
      | tee "$OUT/final_${SIZES// /_}.log" | cut -c1-300
  done
  regression_gate 100 8
  ;;
confirm)  # run 28: the shipped op (triton_op) beside SDPA in one process: batch 16 x 480, then 390 px (where
          # run 26 saw Inductor split the qkv bias off); the gate again, its JSON kept (6 files)
  timeout 200 python3 scripts/gpu_levers.py --variants base,sdpa --sizes 480 --batch 16 --iterations 30 \
    --fp16-out --e2e none --profile base,sdpa --deadline 150 --name confirm_b16 2>&1 \
    | noise | tee "$OUT/confirm_b16.log" | cut -c1-300
  timeout 150 python3 scripts/gpu_levers.py --variants base,sdpa --sizes 390 --e2e none \
    --profile base,sdpa --deadline 120 --name confirm_390 2>&1 | noise | tee "$OUT/confirm_390.log" | cut -c1-300
  regression_gate 100 4
  ;;
ws)  # run 29: Triton's automatic warp specialisation of the key loop, per tile, against cuDNN (the kernel then
     # had a WARP_SPECIALIZE switch and this script a --warp-specialize flag: no gain, both removed after the
     # run; as written now it re-times the tiles); then that the shipped op still compiles under Inductor
  timeout 100 python3 scripts/gpu_attention_inductor.py 2>&1 | tail -30 | tee "$OUT/inductor.log"
  timeout 300 python3 scripts/gpu_attention_kernel.py --tiles 64,64,4,3 64,64,4,2 128,64,8,3 128,128,8,3 \
    128,64,4,3 --deadline 260 2>&1 | noise | tee "$OUT/attention_ws.log"
  ;;
esac
# run 31 (`lnsource`): why alternate layers' LayerNorm kernels take 32/42 us or 54/68 us at batch 16 x 480
# (run 20's trace): the defaults at batch 16, traced, and Inductor's generated trunk module kept for reading
if [ "${1:-}" = lnsource ]; then
  export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_ln
  timeout 200 python3 scripts/gpu_levers.py --variants base --sizes 480 --batch 16 --iterations 30 --e2e none \
    --profile base --trace base --deadline 120 --name ln_b16 2>&1 | noise | tee "$OUT/ln_b16.log" | cut -c1-300
  for f in $(grep -l "def call(" $(grep -rl "native_layer_norm" /tmp/inductor_ln --include=*.py) | head -3); do
    cp "$f" "$OUT/trunk_$(basename "$f").txt"; echo "kept $f ($(wc -c < "$f") bytes)"
  done
fi
# run 32 (`realize`): the residual sums realised after 1 or 2 reads (Inductor's realize_reads_threshold, 4 by
# default) beside the defaults, at batch 16 x 480 and at 260 / 910 px, fidelity in the same process
if [ "${1:-}" = realize ]; then
  timeout 250 python3 scripts/gpu_levers.py --variants base,realize1,realize2 --sizes 480 --batch 16 --iterations 30 \
    --e2e none --profile base,realize1,realize2 --deadline 200 --name realize_b16 2>&1 | noise \
    | tee "$OUT/realize_b16.log" | cut -c1-300
  timeout 300 python3 scripts/gpu_levers.py --variants base,realize1,realize2 --sizes 260 910 --e2e none \
    --profile base,realize1,realize2 --deadline 230 --name realize 2>&1 | noise | tee "$OUT/realize.log" | cut -c1-300
fi
# run 33 (`realize2`): realize_reads_threshold=2 beside the defaults once more, at batch 16 x 480 and at 520 px
if [ "${1:-}" = realize2 ]; then
  timeout 200 python3 scripts/gpu_levers.py --variants base,realize2 --sizes 480 --batch 16 --iterations 30 \
    --e2e none --profile base,realize2 --deadline 150 --name realize2_b16 2>&1 | noise \
    | tee "$OUT/realize2_b16.log" | cut -c1-300
  timeout 150 python3 scripts/gpu_levers.py --variants base,realize2 --sizes 520 --e2e none \
    --profile base,realize2 --deadline 120 --name realize2_520 2>&1 | noise | tee "$OUT/realize2_520.log" | cut -c1-300
fi
# next (`realize_six`, not run yet): realize_reads_threshold=2 beside the defaults at all six sizes, fidelity in the
# same processes: what making it a default needs (docs/benchmarks.md, seventh session, runs 32-33)
if [ "${1:-}" = realize_six ]; then
  for SIZES in "260 390 520" "650 780 910"; do
    timeout 280 python3 scripts/gpu_levers.py --variants base,realize2 --sizes $SIZES --e2e none --profile none \
      --deadline 150 --name "realize_six_${SIZES// /_}" 2>&1 | noise | tee "$OUT/realize_six_${SIZES// /_}.log" | cut -c1-300
  done
fi
