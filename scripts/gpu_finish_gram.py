"""The finish kernel alone, two passes (shipped) against one pass with neighbour dot products
(scripts/finish_gram.py), on the H100 (issue 13, twelfth session).

head1 as the trunk returns it (fp16, channels-last) at the shapes of scripts/gpu_finish_kernel.py,
fp32 and fp16 features, the shipped tile; CUDA events, median of 50, in the order A-B-A-B. The max
abs difference between the two guards every row.

    PYTHONPATH=src python3 scripts/gpu_finish_gram.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from finish_gram import upsample2_normalize_gram  # scripts/ is on sys.path when this runs as a script
from gpu_finish_kernel import SHAPES, median_ms

from lseg_encoder.kernels.upsample_normalize import upsample2_normalize


def main() -> None:
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, shape in SHAPES.items():
        gen = torch.Generator(device="cuda").manual_seed(0)
        # a smooth map with a per-image mean, as features are, then fp16 channels-last
        head = (torch.randn(shape[0], shape[1], 1, 1, device="cuda", generator=gen)
                + 0.5 * torch.randn(shape, device="cuda", generator=gen)).half()
        head = head.contiguous(memory_format=torch.channels_last)
        for dtype in (torch.float32, torch.float16):
            one, two = upsample2_normalize_gram(head, dtype), upsample2_normalize(head, dtype)
            diff = (one.float() - two.float()).abs().max()
            times = {"two-pass": [], "one-pass": []}
            for _ in range(2):
                times["two-pass"].append(median_ms(lambda h=head, d=dtype: upsample2_normalize(h, d)))
                times["one-pass"].append(median_ms(lambda h=head, d=dtype: upsample2_normalize_gram(h, d)))
            row = {"shape": name, "dtype": str(dtype), "max_diff": diff.item(), **times}
            rows.append(row)
            print(f"{name:8s} {str(dtype):14s} two-pass {' / '.join(f'{t * 1e3:8.1f}' for t in times['two-pass'])} us"
                  f"  one-pass {' / '.join(f'{t * 1e3:8.1f}' for t in times['one-pass'])} us  max diff {diff:.1e}",
                  flush=True)
    (out / "finish_gram.json").write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
