"""H100 measurement for issue 13 (fourteenth session): `extract`'s copy to the host overlapping the next
chunk's forward, at the level of `FeatureComputer` (no decode, no writer).

Why: the native job's chunk was forward, then copy, then the next chunk (`native_batch`), and at 480 px
the copy of the fp16 features (59 MB an image) takes about as long as the forward. Now `run_items`
starts chunk i+1 (`native_start`) before it waits for chunk i. This times both orders over the same
pinned uint8 chunks, in one process, wall-clock ms a chunk over --chunks chunks, the two orders
alternating --rounds times; beside them the runner's device-only ms a batch (fp16 features), the floor.

    PYTHONPATH=src python3 scripts/gpu_extract_overlap.py --batches 8 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from gpu_lanes import call_info, log, synthetic_vitl16

from lseg_encoder.extract.compute import FeatureComputer, JobSpec
from lseg_encoder.suites.timing import time_runner


def one_by_one(computer: FeatureComputer, chunks: list[torch.Tensor], keep: bool = False) -> list:
    """Chunk after chunk, each waited for. The arrays are dropped as `--sink none` drops them (unless `keep`),
    so the same pinned blocks circulate: kept, every chunk would pin a new one (0.8 s for 472 MB)."""
    out = []
    for c in chunks:
        arrays = computer.native_batch(c)
        if keep:
            out.append(arrays)
    return out


def overlapped(computer: FeatureComputer, chunks: list[torch.Tensor], keep: bool = False) -> list:
    """As `extract.pipeline.run_items` after its first chunk: start the next, then finish the one before."""
    out, pending = [], None
    for c in chunks:
        started = computer.native_start(c)
        if pending is not None:
            arrays = pending.result()
            if keep:
                out.append(arrays)
        pending = started
    arrays = pending.result()
    return [*out, arrays] if keep else out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--chunks", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": call_info(), "args": vars(args), "batches": {}}
    enc = synthetic_vitl16()
    rng = np.random.default_rng(0)
    for batch in args.batches:
        spec = JobSpec(weights="synthetic", backbone="clip_vitl16_384", backend="compiled", device="cuda",
                       recipe_options={"size": [args.size, args.size]}, dtype="fp16", batch=batch)
        computer = FeatureComputer(spec, enc)
        chunks = [torch.from_numpy(rng.integers(0, 256, (batch, args.size, args.size, 3), dtype=np.uint8)).pin_memory()
                  for _ in range(4)]
        chunks = [chunks[i % 4] for i in range(args.chunks)]
        t0 = time.perf_counter()
        first = one_by_one(computer, chunks[:4], keep=True)  # compile, capture, pin the host blocks
        log(f"batch {batch}: first four chunks (compile) {time.perf_counter() - t0:.1f} s")
        same = all(np.array_equal(a, b) for got, want in zip(overlapped(computer, chunks[:4], keep=True), first)
                   for a, b in zip(got, want))
        del first  # its pinned blocks go back to the allocator
        row = results["batches"][batch] = {"overlapped equals one by one": same, "one by one": [], "overlapped": []}
        for _ in range(args.rounds):
            for name, fn in (("one by one", one_by_one), ("overlapped", overlapped)):
                torch.cuda.synchronize()
                t = time.perf_counter()
                fn(computer, chunks)
                row[name].append((time.perf_counter() - t) * 1e3 / len(chunks))
        x = torch.rand(batch, 3, args.size, args.size, device="cuda")
        dev = time_runner(computer.runner, x, mode="device", warmup=5, iterations=30, out_dtype=torch.float16)
        row["device-only ms a batch, fp16 features"] = dev.median_ms
        for name in ("one by one", "overlapped"):
            med = statistics.median(row[name])
            row[f"{name} median ms a chunk"] = med
            row[f"{name} images a second"] = batch * 1e3 / med
            log(f"batch {batch} x {args.size}: {name}: {med:.2f} ms a chunk ({batch * 1e3 / med:.1f} img/s), "
                f"rounds {', '.join(f'{v:.2f}' for v in row[name])}")
        log(f"batch {batch}: device-only {dev.median_ms:.2f} ms a batch ({batch * 1e3 / dev.median_ms:.1f} img/s); "
            f"overlapped equals one by one to the bit: {same}")
        computer.close()
        del computer, chunks
        torch.cuda.empty_cache()
        (out_dir / "extract_overlap.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
