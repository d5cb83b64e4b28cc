"""Diagnosis: can Inductor compile kernels/attention.py itself (`torch.library.triton_op`)? (issue 13)

Run 22 failed in `tl.dot` when Inductor recompiled the kernel from its source; run 25 (then with a
second, opaque `custom_op` beside it) kept Inductor's source of the kernel: its signature typed the
Python float `qk_scale` as fp64, which made the softmax fp64. The kernel casts it to fp32 since.
This compiles a small function around the shipped op, prints the error if any, and copies
Inductor's generated source of the kernel to $OUT for reading.

    PYTHONPATH=src python3 scripts/gpu_attention_inductor.py
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import traceback
from pathlib import Path

OUT = Path(os.environ.get("OUT", "out"))
OUT.mkdir(parents=True, exist_ok=True)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_")

import torch  # noqa: E402

from lseg_encoder.kernels import attention as A  # noqa: E402


def main() -> None:
    qkv = torch.randn(1, 257, 3072, device="cuda").half()
    want = A.attention_from_qkv(qkv, 16)
    try:
        got = torch.compile(lambda x: A.attention_from_qkv(x, 16) + 1, fullgraph=True)(qkv)
        print(f"lseg::attention: compiled, max diff {(got - 1 - want).abs().max().item():.3e}", flush=True)
    except Exception:
        print("lseg::attention: FAILED", flush=True)
        traceback.print_exc()
    sources = [p for p in glob.glob(os.environ["TORCHINDUCTOR_CACHE_DIR"] + "/**/*.py", recursive=True)
               if "_scores_block" in Path(p).read_text(errors="replace")]
    for i, path in enumerate(sources[:4]):  # the module with the kernel and its wrapper, a few at most
        shutil.copy(path, OUT / f"inductor_src_{i}.py")
        print("kept", path, flush=True)

if __name__ == "__main__":
    main()
