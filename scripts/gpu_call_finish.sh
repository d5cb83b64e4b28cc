#!/usr/bin/env bash
# Issue 13, sixth session (2026-11-26), H100 calls for the last x2 upsample and the channel normalisation
# as one Triton kernel outside the CUDA graph (fused-finish, kernels/upsample_normalize.py):
#   run 14 (two-pass kernel, a channel loop): beside the defaults at 260/520/910 and batch 16 at 480
#   run 15 (`tile`): the one-pass kernel's micro-benchmark over tiles (scripts/gpu_finish_kernel.py),
#          then the levers again with the tile that was fastest over all shapes
# Eighth session (2026-11-26), `sweep`: the kernel back to a channel loop, now with evict-first stores and
#   tiles of 48-128 registers; its micro-benchmark beside Inductor's kernels (and Inductor's one-function
#   NHWC finish for reference), Nsight Compute on the fastest tile at batch 16, then batch 16 x 480 with
#   the defaults / fused finish / realize_reads_threshold 2 / both, and cuBLASLt for every GEMM at 260 px
set -u
. "$(dirname "$0")/gpu_env.sh"
fastest_tile() {  # of finish_kernel.json: the lowest sum of time over Inductor's across the channels-last shapes
  # (the layout the trunk returns; NCHW rows time one tile only), evict-first stores (the kernel's default)
  python3 - "$OUT/finish_kernel.json" <<'PY'
import json, collections, sys
rows = [r for r in json.load(open(sys.argv[1]))['rows'] if r['layout'] == 'channels_last']
total = collections.Counter()
for r in rows:
    for k, v in r.items():
        if k.startswith('triton') and k.endswith('_ms') and 'cached' not in k:
            total[k] += v / r['inductor_ms']  # relative, so that every shape counts alike
print(min(total, key=total.get).split('_')[1].replace('x', ','))
PY
}
# `six`: the fused finish (tile 64,64,4) with realize_reads_threshold 2 beside the defaults at all six sizes,
#   fidelity in the same processes (realize2 alone third, if the deadline leaves time)
if [ "${1:-}" = six ]; then
  for SIZES in "260 390 520" "650 780 910"; do
    timeout 290 python3 scripts/gpu_levers.py --variants ff-realize2,base,realize2 --sizes $SIZES --e2e none \
      --profile none --deadline 185 --name "six_${SIZES// /_}" 2>&1 | noise | tee "$OUT/six_${SIZES// /_}.log" | cut -c1-300
  done
  exit 0
fi
# `confirm` (after both became defaults): batch 16 x 480 defaults / the defaults before / defaults again (the
#   card slows as it warms, so an A-B-A order), 520 and 910 px beside the old defaults, the regression gate,
#   the kernel's tests natively
if [ "${1:-}" = confirm ]; then
  timeout 175 python3 scripts/gpu_levers.py --variants base,before8,base~2 --sizes 480 --batch 16 --e2e none \
    --profile none --deadline 115 --name confirm_b16 2>&1 | noise | tee "$OUT/confirm_b16.log" | cut -c1-300
  timeout 170 python3 scripts/gpu_levers.py --variants base,before8 --sizes 520 910 --e2e none --profile none \
    --deadline 100 --name confirm_520_910 2>&1 | noise | tee "$OUT/confirm_520_910.log" | cut -c1-300
  regression_gate 130 8
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k upsample 2>&1 | tail -3
  exit 0
fi
if [ "${1:-}" = sweep ]; then
  timeout 170 python3 scripts/gpu_finish_kernel.py 2>&1 | noise | tee "$OUT/finish_kernel.log" | cut -c1-400
  TILE=$(fastest_tile)
  echo "tile: $TILE"
  timeout 280 python3 scripts/gpu_levers.py --variants base,fused-finish,realize2,ff-realize2 --sizes 480 --batch 16 \
    --fp16-out --e2e none --profile base,fused-finish,realize2,ff-realize2 --deadline 200 --finish-tile "$TILE" \
    --name sweep_b16 2>&1 | noise | tee "$OUT/sweep_b16.log" | cut -c1-300
  timeout 60 ncu --kernel-name regex:upsample2_normalize --launch-count 1 --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats python3 -c "
import torch
from lseg_encoder.kernels.upsample_normalize import upsample2_normalize
head = torch.randn(16, 512, 120, 120, device='cuda').half().to(memory_format=torch.channels_last)
upsample2_normalize(head, tile=tuple(int(v) for v in '$TILE'.split(',')))
torch.cuda.synchronize()" > "$OUT/ncu_finish_b16.txt" 2>&1; tail -60 "$OUT/ncu_finish_b16.txt" | cut -c1-160
  timeout 140 python3 scripts/gpu_levers.py --variants base,cublaslt --sizes 260 --e2e none --profile base,cublaslt \
    --deadline 90 --name cublaslt_260 2>&1 | noise | tee "$OUT/cublaslt_260.log" | cut -c1-300
  exit 0
fi
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tail -3
TILE=""
if [ "${1:-}" = tile ]; then
  timeout 150 python3 scripts/gpu_finish_kernel.py 2>&1 | noise | tee "$OUT/finish_kernel.log"
  TILE=$(fastest_tile)
  echo "tile: $TILE"
fi
timeout 300 python3 scripts/gpu_levers.py --variants base,fused-finish --sizes 260 520 910 --e2e none \
  --profile base,fused-finish --trace fused-finish --deadline 200 --finish-tile "$TILE" --name finish \
  2>&1 | noise | tee "$OUT/finish.log"
timeout 170 python3 scripts/gpu_levers.py --variants base,fused-finish --sizes 480 --batch 16 --iterations 30 \
  --fp16-out --e2e none --profile fused-finish --deadline 100 --finish-tile "$TILE" --name finish_b16 2>&1 \
  | noise | tee "$OUT/finish_b16.log"
