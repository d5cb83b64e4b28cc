"""Micro-benchmark for issue 13 (tenth session): the two hand-written kernels under a register cap.

Why: Nsight Compute at batch 16 x 480 px (run 44) found both at 120-128 registers a thread, so 4
blocks of 4 warps an SM (25 % occupancy), and latency-bound. Triton's `maxnreg` launch option caps
the registers (ptxas spills the rest to local memory, cached in L1); on the CPU for sm_90 the finish
kernel compiles to 96 / 80 / 64 registers with 240 / 472 / 576 bytes of spill, attention to 112 with
none and 96 with 40 bytes. This times whether the extra blocks an SM pay for the spills, at batch 16
x 480 and 520 px, each kernel launched directly (the shipped tile), 20 launches in one CUDA graph,
median of 30 replays, every variant checked against the uncapped kernel's output.

    PYTHONPATH=src python3 scripts/gpu_register_cap.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import triton
from gpu_attention_kernel import graph_ms  # scripts/ is on sys.path when this runs as a script

from lseg_encoder.kernels import attention, upsample_normalize

SHAPES = {"b16@480": (16, 120, 901), "520": (1, 128, 1025)}  # (batch, head1 side, tokens)


def finish(head: torch.Tensor, maxnreg: int | None) -> torch.Tensor:
    b, c, h, w = head.shape
    out = torch.empty((b, c, 2 * h, 2 * w), dtype=torch.float32, device=head.device)
    block_c, block_x, warps = upsample_normalize.TILE
    extra = {"maxnreg": maxnreg} if maxnreg else {}
    upsample_normalize._upsample2_normalize_kernel[(b * 2 * h, triton.cdiv(2 * w, block_x))](
        head, out, c, h, w, 2 * h, 2 * w, (h - 1) / (2 * h - 1), (w - 1) / (2 * w - 1), *head.stride(),
        *out.stride(), BLOCK_C=block_c, BLOCK_X=block_x, STREAM=True, num_warps=warps, **extra)
    return out


def attend(qkv: torch.Tensor, stages: int, maxnreg: int | None) -> torch.Tensor:
    b, n, three_c = qkv.shape
    out = torch.empty((b, n, three_c // 3), dtype=qkv.dtype, device=qkv.device)
    block_m, block_n, warps, _ = attention.TILE
    extra = {"maxnreg": maxnreg} if maxnreg else {}
    attention._attention_kernel[(triton.cdiv(n, block_m), b * 16)](
        qkv, out, n, 16, three_c // 3, qkv.stride(0), qkv.stride(1), out.stride(0), out.stride(1),
        64 ** -0.5 * attention.LOG2E, HEAD_DIM=64, BLOCK_M=block_m, BLOCK_N=block_n,
        TAIL_N=attention.tail_block(n, block_n), RAW_MAX=attention.RAW_MAX, num_warps=warps, num_stages=stages,
        **extra)
    return out


def main() -> None:
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    results = {"gpu": torch.cuda.get_device_name(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "triton": triton.__version__, "rows": {}}
    gen = torch.Generator(device="cuda").manual_seed(0)
    for label, (b, side, n) in SHAPES.items():
        head = torch.randn(b, 512, side, side, device="cuda", generator=gen).half()
        head = head.to(memory_format=torch.channels_last)
        want = finish(head, None)
        for cap in (None, 96, 80, 64):
            err = (finish(head, cap) - want).abs().max().item()
            ms = graph_ms(lambda c=cap, x=head: finish(x, c))
            results["rows"][f"{label} finish maxnreg={cap}"] = {"us": ms * 1e3, "max_diff": err}
            print(f"{label:8s} finish    maxnreg={cap!s:4s}          {ms * 1e3:8.2f} us  diff {err:.1e}", flush=True)
        qkv = torch.randn(b, n, 3072, device="cuda", generator=gen).half()
        want = attend(qkv, 3, None)
        for stages, cap in ((3, None), (3, 112), (3, 96), (2, None), (2, 96)):
            err = (attend(qkv, stages, cap).float() - want.float()).abs().max().item()
            ms = graph_ms(lambda s=stages, c=cap, x=qkv: attend(x, s, c))
            results["rows"][f"{label} attention stages={stages} maxnreg={cap}"] = {"us": ms * 1e3, "max_diff": err}
            print(f"{label:8s} attention maxnreg={cap!s:4s} stages={stages} {ms * 1e3:8.2f} us  diff {err:.1e}",
                  flush=True)
        (out / "register_cap.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
