#!/usr/bin/env bash
# The H100 benchmark run recorded in docs/benchmarks.md: the seed sizes for compiled (fp16, CUDA
# graphs), eager fp32 and eager fp16, then batch throughput at 480 px. Each piece writes its own
# report under $OUT, so a piece cut short by its time limit does not lose the others.
set -u
OUT=${OUT:-reports/gpu}
SIZES="260 390 520 650 780 910"
run() { timeout "$1" python3 -m lseg_encoder.cli bench --device cuda --no-progress "${@:2}" 2>&1 | grep -v -i warn; }
run 280 --backends compiled --sizes $SIZES --iterations 100 --warmup 10 --out "$OUT/compiled"
run 140 --backends torch,torch-fp16 --sizes $SIZES --iterations 20 --warmup 3 --out "$OUT/eager"
for b in 4 16; do
  run 70 --backends compiled --sizes 480 --batch $b --iterations 30 --mode device --out "$OUT/batch"
done
