#!/usr/bin/env bash
# Issue 13, H100 call of 2026-11-25 (third session): C++ (CUDA graph, pinned, fp16) vs Python
# compiled and Python AOTI at 260/520/910, then the latency-ratio tests against the committed H100
# baseline (the regression gate).  OUT=... bash scripts/gpu_call_cpp.sh
set -u
. "$(dirname "$0")/gpu_env.sh"
# CPP_STEPS: e.g. "package build cpp fidelity python" leaves out the Python AOTI crash check (pyaoti)
timeout 450 python3 scripts/gpu_cpp_compare.py --budget-s ${CPP_BUDGET:-400} --iterations 100 --stream-frames 30 \
  --steps ${CPP_STEPS:-package build cpp fidelity python pyaoti} \
  2>&1 | grep -v -i warn | tee "$OUT/cpp_call.log" | tail -30
regression_gate ${GATE_S:-140} 25
# at most 8 files come back: fold the per-step logs into one archive
cd "$OUT" && tar czf details.tgz logs cpp_*.json 2>/dev/null; rm -rf logs cpp_*.json
