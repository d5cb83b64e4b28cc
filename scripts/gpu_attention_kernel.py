"""Micro-benchmark of kernels/attention.py against cuDNN's SDPA on the GPU (issue 13, seventh session).

The ViT-L attention of each seed size at batch 1 (16 heads of 64, (s/16)^2 + 1 tokens) and of
batch 16 at 480 px, fp16. Both sides start from the qkv GEMM's (B, N, 3C) output and end in the
(B, N, C) layout proj reads, as in the model. Each is captured 20 times into one CUDA graph (the
compiled path replays graphs, so launch overhead is not part of either; cuDNN's memset is) and
timed with CUDA events: median of 30 replays / 20. Every tile is checked against fp32 attention
before it is timed. Writes attention_tiles.json: per shape, cuDNN, every tile, and the best tile.

    PYTHONPATH=src python3 scripts/gpu_attention_kernel.py [--tiles 128,64,8,3 ...] [--kernels shipped tma]

`--kernels wide` also times the shipped kernel with a full masked tail block (before the tenth
session's narrow tail, `kernels.attention.tail_block`); `--kernels tma` also times
`scripts/attention_tma.py` (the same kernel with TMA descriptor loads and stores, ninth session) at
every tile, beside the shipped kernel in the same process.

`--kernels scaled` times the shipped kernel with its row max taken from the scaled scores (before the
eleventh session's `attention.RAW_MAX`); `--kernels pipelined` times `scripts/attention_pipelined.py`
(the next block's scores issued before the current block's softmax). Run 52 timed `--kernels mma-sum`,
the denominator as a tensor-core product with ones (commit bcff58d, since removed).

Run 24 timed a lazy-rescale version of the kernel (since removed) with `--lazy both`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lseg_encoder.kernels import attention
from lseg_encoder.kernels.attention import attention_from_qkv

KERNELS = {"shipped": attention_from_qkv}  # name: (qkv, heads, tile=) -> (B, N, C)

HEADS, HEAD_DIM = 16, 64
SHAPES = {f"{s}": (1, (s // 16) ** 2 + 1) for s in (260, 390, 520, 650, 780, 910)} | {"b16@480": (16, 901)}
TILES = [(64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 4, 4), (64, 128, 4, 2), (64, 128, 4, 3), (64, 32, 4, 3),
         (128, 64, 8, 2), (128, 64, 8, 3), (128, 64, 8, 4), (128, 64, 4, 3), (128, 128, 8, 2), (128, 128, 8, 3),
         (128, 32, 4, 3), (128, 32, 8, 3)]


def sdpa_from_qkv(qkv: torch.Tensor) -> torch.Tensor:
    """What the model's Attention does between its two Linears."""
    b, n, c3 = qkv.shape
    q, k, v = qkv.reshape(b, n, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c3 // 3)


def with_flag(flag: str, value: bool):
    """The shipped kernel with one of `kernels.attention`'s switches set for the call: NARROW_TAIL
    False is the full masked tail block (before the tenth session), RAW_MAX False the row max of the
    scaled scores (before the eleventh)."""
    def kernel(qkv: torch.Tensor, heads: int, *, tile: tuple[int, int, int, int]) -> torch.Tensor:
        shipped = getattr(attention, flag)
        setattr(attention, flag, value)
        try:
            return attention_from_qkv(qkv, heads, tile=tile)
        finally:
            setattr(attention, flag, shipped)
    return kernel


def graph_ms(fn, reps: int = 20, samples: int = 30) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        times.append((a, b))
    torch.cuda.synchronize()
    return sorted(s.elapsed_time(e) for s, e in times)[samples // 2] / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", nargs="*", default=[], help="BLOCK_M,BLOCK_N,warps,stages (default: the sweep)")
    ap.add_argument("--kernels", nargs="+", default=["shipped"],
                    choices=["shipped", "wide", "tma", "scaled", "pipelined"])
    ap.add_argument("--deadline", type=float, default=240)
    args = ap.parse_args()
    if "tma" in args.kernels:
        from attention_tma import tma_attention_from_qkv  # scripts/ is on sys.path when this runs as a script

        KERNELS["tma"] = tma_attention_from_qkv
    if "wide" in args.kernels:
        KERNELS["wide"] = with_flag("NARROW_TAIL", False)
    if "scaled" in args.kernels:
        KERNELS["scaled"] = with_flag("RAW_MAX", False)
    if "pipelined" in args.kernels:
        from attention_pipelined import pipelined_attention_from_qkv

        KERNELS["pipelined"] = pipelined_attention_from_qkv
    tiles = [tuple(int(v) for v in t.split(",")) for t in args.tiles] or TILES
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {"gpu": torch.cuda.get_device_name(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "shapes": {}}
    for label, (b, n) in SHAPES.items():
        gen = torch.Generator(device="cuda").manual_seed(n)
        qkv = torch.randn(b, n, 3 * HEADS * HEAD_DIM, device="cuda", generator=gen).half()
        want = sdpa_from_qkv(qkv.float())
        flop = 4 * b * HEADS * n * n * HEAD_DIM
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            err = (sdpa_from_qkv(qkv).float() - want).abs().max().item()
            ms = graph_ms(lambda x=qkv: sdpa_from_qkv(x))
        row = results["shapes"][label] = {"batch": b, "tokens": n, "gflop": flop / 1e9,
                                          "cudnn": {"ms": ms, "tflops": flop / ms / 1e9, "max_err": err}, "tiles": {}}
        print(f"{label:8s} B={b:2d} N={n:5d} cudnn {ms * 1e3:8.2f} us {flop / ms / 1e9:6.1f} TFLOP/s err {err:.2e}",
              flush=True)
        for tile in tiles:
            for kernel in args.kernels:
                if time.perf_counter() - t0 > args.deadline:
                    break
                fn = KERNELS[kernel]
                key = ",".join(map(str, tile)) if kernel == "shipped" else f"{kernel}:" + ",".join(map(str, tile))
                try:
                    got = fn(qkv, HEADS, tile=tile)
                    err = (got.float() - want).abs().max().item()
                    if err > 1e-2:
                        raise AssertionError(f"max error {err:.3e} against fp32 attention")
                    ms = graph_ms(lambda x=qkv, t=tile, f=fn: f(x, HEADS, tile=t))
                    row["tiles"][key] = {"ms": ms, "tflops": flop / ms / 1e9, "max_err": err}
                    print(f"{'':8s} tile {key:23s} {ms * 1e3:8.2f} us {flop / ms / 1e9:6.1f} TFLOP/s err {err:.2e} "
                          f"({row['cudnn']['ms'] / ms:.2f}x cudnn)", flush=True)
                except Exception as exc:  # a tile that does not fit (shared memory, registers) is recorded
                    row["tiles"][key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                    print(f"{'':8s} tile {key:23s} FAILED {row['tiles'][key]['error'][:160]}", flush=True)
        timed = {k: v for k, v in row["tiles"].items() if "ms" in v}
        if timed:
            best = min(timed, key=lambda k: timed[k]["ms"])
            row["best"] = {"tile": best, **timed[best], "vs_cudnn": row["cudnn"]["ms"] / timed[best]["ms"]}
            print(f"{'':8s} best {best} {timed[best]['ms'] * 1e3:.2f} us, {row['best']['vs_cudnn']:.2f}x cudnn",
                  flush=True)
        (out / "attention_tiles.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
