"""Micro-benchmark of kernels/upsample_normalize.py on the GPU (issue 13, sixth session).

For head1 shapes of 260 / 520 / 910 px and batch 16 at 480 px, in both layouts (NCHW, channels-last):
Inductor's two kernels as the compiled runner runs them (x2 upsample to fp16, then the normalisation)
against the one Triton kernel at several tiles, fp32 and fp16 features. CUDA events, median of 50
after warm-up; the max abs difference to an fp32 reference guards every row.

    PYTHONPATH=src python3 scripts/gpu_finish_kernel.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lseg_encoder.kernels.upsample_normalize import upsample2_normalize
from lseg_encoder.model.encoder import normalize_channels
from lseg_encoder.model.fuse import LowPrecisionEncoder
from lseg_encoder.model.late_upsample import upsample_x2

SHAPES = {"260": (1, 512, 64, 64), "520": (1, 512, 128, 128), "910": (1, 512, 224, 224),
          "b16@480": (16, 512, 120, 120)}
TILES = [(8, 4), (16, 4), (16, 8), (32, 8), (32, 16), (64, 16)]


def median_ms(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        times.append((a, b))
    torch.cuda.synchronize()
    return sorted(s.elapsed_time(e) for s, e in times)[reps // 2]


def main() -> None:
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    up = torch.compile(upsample_x2, dynamic=False)
    norm = torch.compile(LowPrecisionEncoder.normalize, dynamic=False)
    results = {"gpu": torch.cuda.get_device_name(), "rows": []}
    # 4 shapes x 2 layouts x 2 dtypes are 16 specialisations of each compiled function: above dynamo's
    # default cap of 8, after which it runs them eagerly (run 15's Inductor column from 910 px on)
    with torch._dynamo.config.patch(recompile_limit=64):
        measure(up, norm, results, out)


def measure(up, norm, results: dict, out: Path) -> None:
    for label, shape in SHAPES.items():
        for layout in ("nchw", "channels_last"):
            head = torch.randn(shape, device="cuda").half()
            if layout == "channels_last":
                head = head.to(memory_format=torch.channels_last)
            want = normalize_channels(upsample_x2(head.float()))
            for dtype in (torch.float32, torch.float16):
                row = {"shape": label, "layout": layout, "dtype": str(dtype)[6:]}
                row["inductor_ms"] = median_ms(lambda: norm(up(head), dtype))  # noqa: B023
                for tile in TILES:
                    got = upsample2_normalize(head, dtype, tile=tile)
                    err = (got.float() - want).abs().max().item()
                    ms = median_ms(lambda: upsample2_normalize(head, dtype, tile=tile))  # noqa: B023
                    row[f"triton_{tile[0]}x{tile[1]}_ms"] = ms
                    row[f"triton_{tile[0]}x{tile[1]}_err"] = err
                best = min((k for k in row if k.startswith("triton") and k.endswith("_ms")), key=row.get)
                print(f"{label:8s} {layout:13s} {row['dtype']:8s} inductor {row['inductor_ms']:.4f} ms  best {best} "
                      f"{row[best]:.4f} ms  | " + " ".join(f"{row[f'triton_{x}x{w}_ms']:.4f}" for x, w in TILES),
                      flush=True)
                results["rows"].append(row)
                (out / "finish_kernel.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
