#!/usr/bin/env bash
# Issue 15: `extract --devices all` against one GPU of the same machine, in one call (nvidia-h100-x2).
# Input: the extraction benchmark's 1024 generated 640x480 JPEGs (scripts/bench_images.py, same seed),
# copied into 8 sub-folders so the steady window lasts long enough (8192 items, distinct ids).
# Each card is first run alone: that is the 1-GPU baseline per card, and it fills Inductor's cache for
# both devices, so in the all-GPU run both start at once (a cold compile for cuda:1 alone made it
# join 11 s after cuda:0 in the first call, leaving a steady window of ~2 s).
# Setup as docs/extract.md: native 480 px, batch 16, compiled fp16, --sink none, 8 decode workers per GPU.
# Then the same 64 images written as fp16 .npy by one GPU and by all, compared byte for byte.
set -u
OUT=${OUT:-reports/gpu}; mkdir -p "$OUT"
export LSEG_CACHE_DIR=${LSEG_CACHE_DIR:-$PWD/.artifact-cache} PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule
CLI="python3 -m lseg_encoder.cli"
quiet() { grep -v -i -E "warn|it/s\]|img/s\]" ; }
DATA=/tmp/lseg_bench
date -u +"%Y-%m-%dT%H:%M:%SZ"
nvidia-smi --query-gpu=index,name,driver_version,pci.bus_id,clocks.max.sm --format=csv,noheader
nvidia-smi topo -m 2>&1 | head -8
python3 -c 'import torch; print("torch", torch.__version__, "GPUs", torch.cuda.device_count()); import os; print("CPUs", os.cpu_count())'
timeout 120 python3 scripts/bench_images.py $DATA/one 1024 480x640 || exit 1
mkdir -p $DATA/x8 && for c in a b c d e f g h; do cp -r $DATA/one $DATA/x8/$c; done
ls $DATA/one/*.jpg | head -64 > $DATA/subset.txt
run() {  # label, timeout, extract arguments...
  local label=$1 limit=$2; shift 2
  echo "== $label"
  # past its limit the parent gets SIGABRT, and faulthandler prints where each of its threads waits
  PYTHONFAULTHANDLER=1 /usr/bin/time -f "wall %e s" timeout -s ABRT -k 15 "$limit" $CLI extract "$@" --size 480 \
    --batch 16 --workers 8 --no-progress 2>&1 | quiet | tail -"${TAIL:-5}"
}
for d in cuda:0 cuda:1; do run "1 GPU ($d), 8192 images, --sink none" 150 $DATA/x8 --sink none --devices $d; done
nvidia-smi --query-gpu=index,utilization.gpu --format=csv,noheader,nounits -lms 500 > $OUT/util_all.csv 2>&1 &
SMI=$!
TAIL=40 run "all GPUs (--devices all), 8192 images, --sink none" 180 $DATA/x8 --sink none --devices all
kill $SMI 2>/dev/null
echo "== GPU utilisation samples during the all-GPU run (every 0.5 s): busy (>50 %) samples per GPU"
awk -F', *' '{n[$1]++; if ($2+0 > 50) b[$1]++} END {for (g in n) print "GPU " g ": " b[g]+0 " of " n[g] " samples busy"}' $OUT/util_all.csv
[ "${IDENTITY:-1}" = 1 ] || exit 0
run "1 GPU, 64 images -> .npy fp16" 120 @$DATA/subset.txt --out /tmp/f_one --devices cuda:0
run "all GPUs, 64 images -> .npy fp16" 120 @$DATA/subset.txt --out /tmp/f_all --devices all
echo "== identical outputs (1 GPU vs all GPUs)"
python3 - <<'PY'
import pathlib
def files(root):
    return {p.relative_to(root): p for p in pathlib.Path(root).rglob("*.npy")}
one, every = files("/tmp/f_one"), files("/tmp/f_all")
same = [k for k in one if k in every and one[k].read_bytes() == every[k].read_bytes()]
print(f"{len(one)} files from 1 GPU, {len(every)} from all GPUs, {len(same)} byte-identical")
if len(same) != len(one) or len(one) != len(every):
    import numpy as np
    worst = max((float(np.abs(np.load(one[k]).astype("float32") - np.load(every[k]).astype("float32")).max())
                 for k in one if k in every), default=float("nan"))
    print(f"NOT identical: max |diff| {worst:.3g}")
PY
