"""Micro-benchmark of kernels/upsample_normalize.py on the GPU (issue 13, sixth and eighth sessions).

For head1 shapes of 260 / 520 / 910 px and batch 16 at 480 px, in both layouts (NCHW, channels-last):
Inductor's two kernels as the compiled runner runs them (x2 upsample to fp16, then the normalisation)
against the one Triton kernel at several tiles (channel chunk, pixels, warps), fp32 and fp16
features; GB/s counts head1 read once and the features written once. CUDA events, median of 50
after warm-up; the max abs difference to an fp32 reference guards every row.

    PYTHONPATH=src python3 scripts/gpu_finish_kernel.py [--layouts channels_last] [--skip-nhwc]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from gpu_lanes import time_calls

from lseg_encoder.kernels.upsample_normalize import upsample2_normalize
from lseg_encoder.model.encoder import normalize_channels
from lseg_encoder.model.fuse import LowPrecisionEncoder
from lseg_encoder.model.late_upsample import upsample_x2

SHAPES = {"260": (1, 512, 64, 64), "520": (1, 512, 128, 128), "910": (1, 512, 224, 224),
          "b16@480": (16, 512, 120, 120)}
# (channel chunk, pixels, warps): ptxas gives 48-80 registers a thread for these (no spills), 121-128 for
# the (64, 128, 8) / (64, 64, 4) end, so they span occupancy as well as tile shape (run 34)
TILES = [(32, 64, 4), (64, 64, 4), (16, 64, 4), (32, 32, 4), (32, 64, 8), (64, 64, 8), (16, 128, 4), (64, 128, 8)]


def median_ms(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    return sorted(time_calls(fn, reps))[reps // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layouts", nargs="+", default=["nchw", "channels_last"], choices=["nchw", "channels_last"])
    ap.add_argument("--skip-nhwc", action="store_true", help="leave out Inductor's one-function NHWC column")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    up = torch.compile(upsample_x2, dynamic=False)
    norm = torch.compile(LowPrecisionEncoder.normalize, dynamic=False)
    # the same two ops as one compiled function on a channels-last head1: the features come out
    # channels-last (NHWC strides), the layout that needs no transpose (a reference column, not a path)
    whole = torch.compile(lambda head, dtype: LowPrecisionEncoder.normalize(upsample_x2(head), dtype), dynamic=False)
    results = {"gpu": torch.cuda.get_device_name(), "rows": []}
    # 4 shapes x 2 layouts x 2 dtypes are 16 specialisations of each compiled function: above dynamo's
    # default cap of 8, after which it runs them eagerly (run 15's Inductor column from 910 px on)
    with torch._dynamo.config.patch(recompile_limit=64):
        measure(up, norm, whole, results, out, args)


def measure(up, norm, whole, results: dict, out: Path, args) -> None:
    for label, shape in SHAPES.items():
        for layout in args.layouts:
            head = torch.randn(shape, device="cuda").half()
            if layout == "channels_last":
                head = head.to(memory_format=torch.channels_last)
            want = normalize_channels(upsample_x2(head.float()))
            for dtype in (torch.float32, torch.float16):
                row = {"shape": label, "layout": layout, "dtype": str(dtype)[6:]}
                row["inductor_ms"] = median_ms(lambda: norm(up(head), dtype))  # noqa: B023
                if layout == "channels_last" and not args.skip_nhwc:
                    nhwc = whole(head, dtype)
                    row["inductor_nhwc_strides"] = list(nhwc.stride())
                    row["inductor_nhwc_err"] = (nhwc.float() - want).abs().max().item()
                    row["inductor_nhwc_ms"] = median_ms(lambda: whole(head, dtype))  # noqa: B023
                # the trunk returns head1 channels-last; NCHW rows keep one tile for the record
                tiles = TILES if layout == "channels_last" else TILES[:1]
                for tile, streaming in [(t, True) for t in tiles] + [(t, False) for t in tiles[:2]]:
                    got = upsample2_normalize(head, dtype, tile=tile, streaming=streaming)
                    err = (got.float() - want).abs().max().item()
                    ms = median_ms(lambda: upsample2_normalize(head, dtype, tile=tile, streaming=streaming))  # noqa: B023
                    name = "triton_" + "x".join(map(str, tile)) + ("" if streaming else "_cached")
                    row[f"{name}_ms"], row[f"{name}_err"] = ms, err
                best = min((k for k in row if k.startswith("triton") and k.endswith("_ms")), key=row.get)
                gbytes = (head.numel() * head.element_size() + got.numel() * got.element_size()) / 1e9
                row["best_gb_per_s"] = gbytes / row[best] * 1e3
                tiled = [(k[7:-3], v) for k, v in row.items() if k.startswith("triton") and k.endswith("_ms")]
                times = " ".join(f"{k} {v:.4f}" for k, v in tiled)
                print(f"{label:8s} {layout:13s} {row['dtype']:8s} inductor {row['inductor_ms']:.4f} ms "
                      f"(one function {row.get('inductor_nhwc_ms', float('nan')):.4f} ms, "
                      f"strides {row.get('inductor_nhwc_strides')})  best {best} "
                      f"{row[best]:.4f} ms ({row['best_gb_per_s']:.0f} GB/s) | {times}", flush=True)
                results["rows"].append(row)
                (out / "finish_kernel.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
