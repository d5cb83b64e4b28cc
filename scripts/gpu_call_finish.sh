#!/usr/bin/env bash
# Issue 13, sixth session (2026-11-26), H100 calls for the last x2 upsample and the channel normalisation
# as one Triton kernel outside the CUDA graph (fused-finish, kernels/upsample_normalize.py):
#   run 14 (two-pass kernel, a channel loop): beside the defaults at 260/520/910 and batch 16 at 480
#   run 15 (`tile`): the one-pass kernel's micro-benchmark over tiles (scripts/gpu_finish_kernel.py),
#          then the levers again with the tile that was fastest over all shapes
set -u
. "$(dirname "$0")/gpu_env.sh"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tail -3
TILE=""
if [ "${1:-}" = tile ]; then
  timeout 150 python3 scripts/gpu_finish_kernel.py 2>&1 | noise | tee "$OUT/finish_kernel.log"
  TILE=$(python3 -c "
import json, collections
rows = json.load(open('$OUT/finish_kernel.json'))['rows']
total = collections.Counter()
for r in rows:
    for k, v in r.items():
        if k.startswith('triton') and k.endswith('_ms'):
            total[k] += v / r['inductor_ms']  # relative, so that every shape counts alike
print(min(total, key=total.get).split('_')[1].replace('x', ','))")
  echo "tile: $TILE"
fi
timeout 300 python3 scripts/gpu_levers.py --variants base,fused-finish --sizes 260 520 910 --e2e none \
  --profile base,fused-finish --trace fused-finish --deadline 200 --finish-tile "$TILE" --name finish \
  2>&1 | noise | tee "$OUT/finish.log"
timeout 170 python3 scripts/gpu_levers.py --variants base,fused-finish --sizes 480 --batch 16 --iterations 30 \
  --fp16-out --e2e none --profile fused-finish --deadline 100 --finish-tile "$TILE" --name finish_b16 2>&1 \
  | noise | tee "$OUT/finish_b16.log"
