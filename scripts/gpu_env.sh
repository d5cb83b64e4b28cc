# Sourced by the scripts/gpu_call_*.sh scripts: the repo's src on PYTHONPATH, unbuffered output, the
# results folder, and the card and time of the call at the top of its log (every figure names both).
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-reports/gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
date -u +"%Y-%m-%dT%H:%M:%SZ"
# torch's log noise (autotune "ignoring this choice", warnings, blank lines) out of the logs we keep
noise() { grep -v -E "^E1125|Ignoring this choice|^ *$|[Ww]arn" ; }
