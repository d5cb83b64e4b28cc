"""Micro-benchmark for issue 13 (twelfth session): is there GEMM time left in cuBLASLt's own algorithms?

Why: the ViT's 96 GEMMs a forward are the largest item at every size (0.74 ms of 1.46 at 260 px,
about half of batch 16 x 480), and PyTorch asks cuBLASLt's heuristic for **one** algorithm per
shape (`gemm_and_bias`, requestedAlgoCount = 1). TunableOp, PyTorch's way to try others, has only the
"Default" implementation on CUDA builds (its own docstring), and Inductor's Triton GEMM templates
lost to cuBLAS at batch 1 and 16 (docs/benchmarks.md, runs 6 and 59). So no earlier run has timed the
alternatives cuBLASLt itself offers: other tiles, split-K, stream-K, cluster shapes. This asks the
heuristic for up to 64 candidates per shape, for two workspace sizes, times each with the model's
epilogue (bias; bias + GELU for fc1) and checks its output against PyTorch's call. If the best
candidate is not clearly faster than PyTorch's choice, no custom GEMM op is worth shipping.

fp16, the four Linears of a ViT-L block at the token counts of the six seed sizes and of batch
16 x 480 px. Each variant is captured 20 times into one CUDA graph and timed with CUDA events (median
of 30 replays / 20), as scripts/gpu_attention_kernel.py does. Candidates run through the op of
scripts/lt_linear.cpp (compiled on first use; run 64 ran this script's own first copy of that C++).

    PYTHONPATH=src python3 scripts/gpu_lt_search.py [--rows 257 1025] [--deadline 400]
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_attention_kernel import graph_ms  # scripts/ is on sys.path when this runs as a script
from gpu_gemm_rows import LINEARS
from gpu_gemm_rows import linear as torch_linear  # PyTorch's call for each Linear, as the model makes it
from lt_linear import Shape, extension, linear

# tokens: (s / 16)^2 + 1 at 260 / 390 / 520 / 650 / 780 / 910 px; 16 x 901 at batch 16 x 480 px
ROWS = (257, 577, 1025, 1601, 2305, 3137, 14416)
WORKSPACES = (1 << 20, 32 << 20)  # PyTorch's cuBLASLt default (1 MiB) and cuBLAS's Hopper size


def search_shape(ext, name: str, m: int, deadline: float) -> dict:
    k, n = LINEARS[name]
    shape = Shape(m, n, k, name == "fc1+gelu")
    gen = torch.Generator(device="cuda").manual_seed(m * 7 + n)
    x = torch.randn(m, k, device="cuda", generator=gen).half()
    w = (torch.randn(n, k, device="cuda", generator=gen) * k ** -0.5).half()
    b = (torch.randn(n, device="cuda", generator=gen) * 0.1).half()
    want = torch_linear(name, x, w, b)
    reference = (x.float() @ w.float().t() + b.float())
    if shape.gelu:
        reference = F.gelu(reference, approximate="tanh")
    row = {"m": m, "n": n, "k": k, "torch_us": graph_ms(lambda: torch_linear(name, x, w, b)) * 1e3,
           "torch_err": (want.float() - reference).abs().max().item(), "candidates": []}
    for ws in WORKSPACES if ext else ():
        found = ext.candidates(*shape.args(), ws, 64)
        if ws == WORKSPACES[0]:
            print(f"  {name}/{m}: {len(found)} candidates within {ws >> 20} MiB", flush=True)
        for index, (words, need) in enumerate(found):
            if time.monotonic() > deadline:
                row["cut_by_deadline"] = True
                return row
            ext.choose(*shape.args(), words, need)
            out = linear(x, w, b, shape.gelu)
            err = (out.float() - reference).abs().max().item()
            us = graph_ms(lambda: linear(x, w, b, shape.gelu)) * 1e3
            row["candidates"].append({"workspace": ws, "rank": index, "algo": [hex(v & (2**64 - 1)) for v in words],
                                      "needs": need, "us": us, "err": err})
        ext.forget(*shape.args())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--deadline", type=float, default=400.0, help="seconds; the rest is skipped, and said")
    parser.add_argument("--torch-only", action="store_true",
                        help="time PyTorch's calls only (to compare processes run with other cuBLAS settings)")
    parser.add_argument("--name", default="lt_search", help="stem of the JSON written under $OUT")
    args = parser.parse_args()
    faulthandler.enable()  # a crash inside cuBLASLt names the Python line that called it
    start = time.monotonic()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    ext = None if args.torch_only else extension()
    print(f"[{time.monotonic() - start:6.1f}s] extension built" if ext else "PyTorch's calls only", flush=True)
    results = {"gpu": torch.cuda.get_device_name(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "blas": torch.backends.cuda.preferred_blas_library().name,
               "env": {k: v for k, v in os.environ.items() if k.startswith(("CUBLAS", "TORCH_CUBLAS"))},
               "rows": {}}
    for m in args.rows:
        per_forward = {"torch": 0.0, "best": 0.0}
        for name in LINEARS:
            row = search_shape(ext, name, m, start + args.deadline)
            results["rows"][f"{m} {name}"] = row
            # a candidate counts only if its error is within 2x PyTorch's own against the fp32 product
            fair = [c for c in row["candidates"] if c.get("err", 1e9) <= 2 * row["torch_err"] + 1e-3]
            best = min(fair, key=lambda c: c["us"]) if fair else None
            first = [c["us"] for c in row["candidates"] if c["rank"] == 0 and "us" in c]
            print(f"[{time.monotonic() - start:6.1f}s] M={m:5d} {name:8s} torch {row['torch_us']:8.2f} us"
                  f" | heuristic #0 {' / '.join(f'{u:.2f}' for u in first)} us"
                  f" | best of {len(fair)}/{len(row['candidates'])} "
                  + (f"{best['us']:8.2f} us ({best['us'] / row['torch_us'] - 1:+.1%}) {' '.join(best['algo'][:2])}"
                     f" ws={best['workspace'] >> 20}MiB err {best['err']:.1e} (torch {row['torch_err']:.1e})"
                     if best else "none"), flush=True)
            per_forward["torch"] += 24 * row["torch_us"] / 1e3
            per_forward["best"] += 24 * (best["us"] if best else row["torch_us"]) / 1e3
            if row.get("cut_by_deadline"):
                break
        results["rows"][f"{m} per forward"] = per_forward
        print(f"           M={m:5d} 96 GEMMs a forward: torch {per_forward['torch']:.3f} ms,"
              f" best candidates {per_forward['best']:.3f} ms"
              f" ({per_forward['best'] - per_forward['torch']:+.3f} ms)", flush=True)
        if time.monotonic() > start + args.deadline:
            print(f"deadline: rows after M={m} not measured", flush=True)
            break
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
