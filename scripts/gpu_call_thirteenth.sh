#!/usr/bin/env bash
# Issue 13, thirteenth session (2026-11-26), H100 calls:
#   runs 71-72 (`streams`, at commit c878c99) - batches in flight on several CUDA streams: the shipped compiled
#        path captured into one CUDA graph per lane, replayed one after another on one stream against lane i on
#        stream i, batch 16 with 2, 3 and 4 lanes and batch 8 with 3, at 480 px, A-B-A-B (scripts/gpu_two_streams.py
#        there); run 71 captured every lane on one stream (one cuBLAS workspace: wrong features), run 72 on a
#        stream each. Run 73 (`streams-span`): 16x2 and 8x2 against the shipped runner timed the same way. The
#        experiment became runners/lanes.py and left scripts/ with its two modes
#   lanes - what shipped from runs 71-73 (`CompiledRunner.graph_lanes`, `stream_infer(lanes=N)`):
#        tests/test_lanes.py natively, then 1-3 lanes against the runner at batch 16 and 8 x 480, 1 x 520
#        and 1 x 260, device-only and through the stream (scripts/gpu_lanes.py) (run 74 failed on an inference
#        tensor written outside inference mode; run 75)
#   probe (run 76) - where the lane stream's time goes: run 75's stream with two lanes took 2.1x one lane's
#        time a batch (scripts/gpu_lane_stream_probe.py)
#   final (run 77) - `bench --lanes` at batch 16 x 480 (2 lanes) and at 260 / 520
#        px (3 lanes); the host-output stream with 1 and 3 lanes at 1 x 260 and 8 x 480, twice each
#   gate (run 78) - tests/test_lanes.py natively, then the latency ratios (with the new lanes ratio) and the
#        regression gate against the committed H100 baseline
#   recheck (run 79) - the lane tests and the lanes ratio again after the second reading's changes (7665bfc)
#   drop (run 80) - the lane tests and `bench --lanes 3` at 260 / 390 px after `CompiledRunner.drop_lanes`
#   run 81 (`gate` again) - after the last reading moved the streams' checks and staging into shared helpers
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-lanes}" in
lanes)
  timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_lanes.py 2>&1 | grep -v Warn | tail -40 | cut -c1-300
  timeout 420 python3 scripts/gpu_lanes.py --configs 16x480 8x480 1x520 1x260 --deadline 300 2>&1 | noise \
    | tee "$OUT/lanes.log"
  echo "lanes exit ${PIPESTATUS[0]}"
  ;;
probe)
  timeout 300 python3 scripts/gpu_lane_stream_probe.py 2>&1 | noise | tee "$OUT/lane_stream_probe.log"
  ;;
final)
  timeout 170 python3 -m lseg_encoder.cli bench --backends compiled --sizes 480 --batch 16 --lanes 2 --mode device \
    --iterations 100 --out "$OUT" --name bench_b16_lanes --no-progress 2>&1 | noise | tail -12
  timeout 200 python3 -m lseg_encoder.cli bench --backends compiled --sizes 260 520 --lanes 3 --mode device \
    --iterations 200 --out "$OUT" --name bench_b1_lanes --no-progress 2>&1 | noise | tail -12
  timeout 150 python3 scripts/gpu_lanes.py --configs 1x260 8x480 --stream-only --stream-lanes 1 3 --deadline 90 \
    2>&1 | noise | tee "$OUT/lanes_stream.log"
  ;;
gate)
  timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_lanes.py 2>&1 | grep -v Warn | tail -4
  regression_gate 400 30
  ;;
recheck)
  timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_lanes.py 2>&1 | grep -v Warn | tail -4
  timeout 300 python3 -m pytest -q -rs -p no:cacheprovider --benchmark-only tests/test_latency_ratios.py -k lanes \
    --benchmark-json="$OUT/ratios.json" 2>&1 | grep -v Warn | tail -4
  ;;
drop)
  timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_lanes.py 2>&1 | grep -v Warn | tail -4
  timeout 300 python3 -m lseg_encoder.cli bench --backends compiled --sizes 260 390 --lanes 3 --mode device \
    --iterations 100 --out "$OUT" --name bench_drop_lanes --no-progress 2>&1 | noise | tail -12
  ;;
*) echo "usage: $0 [lanes|probe|final|gate|recheck|drop]" >&2; exit 2 ;;
esac
