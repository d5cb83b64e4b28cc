"""Micro-benchmark for issue 13 (tenth session): the ViT's GEMMs with and without the class token's row.

Why: every seed size has (s/16)^2 + 1 tokens, a multiple of 64 (256 at 260 px, 1024 at 520) plus the
class token, so each of the 96 GEMMs of a forward has one row past a tile boundary, and cuBLAS
launches a whole extra row of tiles (at 520 px fc1's 1025 x 4096 output needs 9 x 16 tiles of 128,
more than the 132 SMs hold in one wave, where 8 x 16 would fit). If a GEMM over the patch rows plus a
separate one-row GEMM for the class token were clearly faster, the ViT could run its Linears that
way; this measures it first, in isolation, before any change to the model.

fp16, the model's four Linears (qkv, proj, fc1 with the GELU epilogue the compiled path uses, fc2),
at batch 1 for 260 / 520 / 910 px. Each variant is captured 20 times into one CUDA graph and timed
with CUDA events (median of 30 replays / 20), as scripts/gpu_attention_kernel.py does.

    PYTHONPATH=src python3 scripts/gpu_gemm_rows.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_attention_kernel import graph_ms  # scripts/ is on sys.path when this runs as a script

LINEARS = {"qkv": (1024, 3072), "proj": (1024, 1024), "fc1+gelu": (1024, 4096), "fc2": (4096, 1024)}
SIZES = (260, 520, 910)


def linear(name: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if name == "fc1+gelu":  # what model/gelu_epilogue.py runs
        return torch._addmm_activation(b, x, w.t(), use_gelu=True)
    return F.linear(x, w, b)


def main() -> None:
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    results = {"gpu": torch.cuda.get_device_name(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "rows": {}}
    gen = torch.Generator(device="cuda").manual_seed(0)
    for size in SIZES:
        m = (size // 16) ** 2 + 1
        total = {"whole": 0.0, "patches + class row": 0.0, "patches only": 0.0}
        for name, (k, n) in LINEARS.items():
            x = torch.randn(m, k, device="cuda", generator=gen).half()
            w = (torch.randn(n, k, device="cuda", generator=gen) * k ** -0.5).half()
            b = torch.randn(n, device="cuda", generator=gen).half()
            whole = graph_ms(lambda f=name, x=x, w=w, b=b: linear(f, x, w, b))
            split = graph_ms(lambda f=name, x=x, w=w, b=b: (linear(f, x[1:], w, b), linear(f, x[:1], w, b)))
            patches = graph_ms(lambda f=name, x=x, w=w, b=b: linear(f, x[1:], w, b))
            flop = 2 * m * k * n
            row = results["rows"][f"{size} {name}"] = {
                "m": m, "k": k, "n": n, "whole_us": whole * 1e3, "split_us": split * 1e3,
                "patches_us": patches * 1e3, "whole_tflops": flop / whole / 1e9}
            for key, ms in zip(total, (whole, split, patches)):
                total[key] += ms
            print(f"{size} {name:9s} M={m:5d} whole {row['whole_us']:7.2f} us ({row['whole_tflops']:5.1f} TFLOP/s)"
                  f"  patches+class {row['split_us']:7.2f} us  patches only {row['patches_us']:7.2f} us", flush=True)
        results["rows"][f"{size} per block"] = {k: v * 1e3 for k, v in total.items()}
        print(f"{size} per block: " + ", ".join(f"{k} {v * 1e3:.2f} us" for k, v in total.items())
              + f"; x24 blocks: whole {total['whole'] * 24:.3f} ms, split {total['patches + class row'] * 24:.3f} ms",
              flush=True)
        (out / "gemm_rows.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
