# Sourced by the scripts/gpu_call_*.sh scripts: the repo's src on PYTHONPATH, unbuffered output, the
# results folder, and the card and time of the call at the top of its log (every figure names both).
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-reports/gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
date -u +"%Y-%m-%dT%H:%M:%SZ"
# torch's log noise (autotune "ignoring this choice", warnings, blank lines) out of the logs we keep
noise() { grep -v -E "^E1125|Ignoring this choice|^ *$|[Ww]arn" ; }
# The latency ratios and the regression gate against the committed H100 baseline (what the nox `gpu`
# session checks); $1: time limit in seconds, $2: lines of pytest's summary to show
regression_gate() {
  timeout "$1" python3 -m pytest -rs -q --benchmark-only tests/test_latency_ratios.py \
    --benchmark-storage=file://tests/benchmarks/NVIDIA_H100_80GB_HBM3 --benchmark-compare \
    --benchmark-compare-fail=median:15% --benchmark-json="$OUT/ratios.json" 2>&1 | tee "$OUT/gate.log" | tail -"$2"
}
