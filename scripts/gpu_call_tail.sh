#!/usr/bin/env bash
# Issue 13, fifth session (2026-11-25): the decoder tail and the CUDA graph's output, on the H100.
#   tail - the default before run 8 (seed-graph: features normalised inside the CUDA graph, then copied
#          out of its pool), the copy removed (split: the normalisation outside the graph writes memory the
#          caller owns), and split with the decoder's 1x1 convs before their upsamples (late-split, the
#          default since run 8), at 260/520/910 with fidelity and profiles; then batch 16 at 480.
# Run 7 (cuDNN benchmarking; the last upsample fused into the normalisation) and run 8's ATen upsample
# outside the graph lost and left the code; their figures are in docs/benchmarks.md.
#   patch (`bash scripts/gpu_call_tail.sh patch`, run 11) - the defaults vs the patch embedding as one GEMM.
set -u
. "$(dirname "$0")/gpu_env.sh"
if [ "${1:-tail}" = patch ]; then
  timeout 300 python3 scripts/gpu_levers.py --variants base,patch-gemm --sizes 260 520 910 --e2e none \
    --profile base,patch-gemm --deadline 200 --name patch 2>&1 | noise | tee "$OUT/patch.log"
  timeout 150 python3 scripts/gpu_levers.py --variants base,patch-gemm --sizes 480 --batch 16 --iterations 30 \
    --e2e none --profile none --deadline 100 --name patch_b16 2>&1 | noise | tee "$OUT/patch_b16.log"
  exit 0
fi
timeout 420 python3 scripts/gpu_levers.py --variants seed-graph,split,late-split --sizes 260 520 910 \
  --e2e late-split --profile seed-graph,split,late-split --deadline 330 --name tail 2>&1 | noise | tee "$OUT/tail.log"
timeout 160 python3 scripts/gpu_levers.py --variants seed-graph,late-split --sizes 480 --batch 16 \
  --iterations 30 --e2e none --profile none --deadline 110 --name tail_b16 2>&1 | noise | tee "$OUT/tail_b16.log"
