#!/usr/bin/env bash
# Last H100 call of 2026-11-25: full-vocabulary encode time, C++ vs Python AOTI (issue 8), and the
# batch 1 and 8 throughput points at 480 px that the earlier call had no time for.
set -u
OUT=${OUT:-reports/gpu}
timeout 60 python3 scripts/gpu_vocab_time.py 2>&1 | grep -v -E "it/s|s/it" | tail -2
OUT=$OUT/cpp timeout 390 python3 scripts/gpu_cpp_compare.py --iterations 100 2>&1 | grep -v -i warn | tail -25
for b in 1 8; do
  timeout 50 python3 -m lseg_encoder.cli bench --device cuda --no-progress --backends compiled --sizes 480 \
    --batch $b --iterations 30 --mode device --out "$OUT/batch" 2>&1 | grep -v -i warn | tail -4
done
