"""H100 measurement for issue 13 (twelfth session): the extract job's features written in fp16 by the runner.

Why: `lseg-encoder extract` stores fp16 features by default (native recipe, 480 px). Until this
session `FeatureComputer` took the compiled runner's fp32 features and cast them with a separate
kernel; now, without PCA or resize, it asks the runner for fp16 and the finish kernel writes them
(src/lseg_encoder/extract/compute.py, `_stores_runner_output`). This times both per batch in one
process, on one compiled runner, A-B-A-B:
- device-only (CUDA events, `suites.timing.time_runner`): fp32 features; fp32 then the cast (the old
  path); fp16 from the kernel (the new one);
- `FeatureComputer.native_batch` itself (uint8 pixels in, host arrays out; wall clock), old against new,
  whose outputs must be equal to the bit.

    PYTHONPATH=src python3 scripts/gpu_extract_dtype.py [--batches 16 8] [--iterations 50]
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

from lseg_encoder.extract.compute import FeatureComputer, JobSpec
from lseg_encoder.suites.timing import machine_info, time_runner
from lseg_encoder.weights.synthetic import default_synthetic_checkpoint


class CastAfterwards(FeatureComputer):
    """The path before this session: fp32 features from the runner, cast to the stored dtype after."""

    @property
    def _stores_runner_output(self) -> bool:
        return False


class CastingRunner:
    """`runner` whose device output is fp32 features cast afterwards, for `time_runner`."""

    def __init__(self, runner, dtype: torch.dtype):
        self.runner, self.dtype, self.device = runner, dtype, runner.device
        self.backend, self.precision = runner.backend, runner.precision

    def infer(self, x, *, to_host=False, out_dtype=None):
        return self.runner.infer(x, to_host=False).to(self.dtype)

    def synchronize(self):
        self.runner.synchronize()


def wall_ms(fn, iterations: int) -> tuple[float, float]:
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), statistics.stdev(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 8])
    ap.add_argument("--iterations", type=int, default=50)
    # a dry run of the script on a CPU: --device cpu --backend torch --backbone tiny --size 64
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="compiled")
    ap.add_argument("--backbone", default="clip_vitl16_384")
    ap.add_argument("--size", type=int, default=480)
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_info(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    weights, size = str(default_synthetic_checkpoint(args.backbone)), args.size
    for batch in args.batches:
        spec = JobSpec(weights=weights, backbone=args.backbone, backend=args.backend, device=args.device,
                       recipe_options={"size": [size, size]}, dtype="fp16", batch=batch)
        computer = FeatureComputer(spec)
        rng = np.random.default_rng(batch)
        pixels = torch.from_numpy(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
        if args.device != "cpu":
            pixels = pixels.pin_memory()
        new = computer.native_batch(pixels)  # compiles the bucket (fp32 and fp16 finishes)
        computer.__class__ = CastAfterwards
        old = computer.native_batch(pixels)
        equal = all(np.array_equal(a, b) for a, b in zip(old, new))
        x = torch.rand(batch, 3, size, size, device=args.device) * 2 - 1
        row = results["rows"][batch] = {"equal": equal, "device_ms": {}, "native_batch_ms": {}}
        print(f"batch {batch}: stored features equal to the bit: {equal}", flush=True)
        for rnd in (1, 2):
            for name, runner, dtype in (("fp32 features", computer.runner, None),
                                        ("fp32 then cast (before)", CastingRunner(computer.runner, torch.float16),
                                         None),
                                        ("fp16 from the kernel (now)", computer.runner, torch.float16)):
                st = time_runner(runner, x, mode="device", warmup=5, iterations=args.iterations, out_dtype=dtype)
                row["device_ms"].setdefault(name, []).append((st.median_ms, st.std_ms))
                print(f"  {rnd} device-only {name:28s} {st.median_ms:7.3f} ± {st.std_ms:.3f} ms "
                      f"({batch * 1e3 / st.median_ms:6.1f} img/s)", flush=True)
            for name, cls in (("before", CastAfterwards), ("now", FeatureComputer)):
                computer.__class__ = cls
                ms, sd = wall_ms(lambda c=computer, p=pixels: c.native_batch(p), args.iterations)
                row["native_batch_ms"].setdefault(name, []).append((ms, sd))
                print(f"  {rnd} native_batch {name:6s} {ms:7.2f} ± {sd:.2f} ms ({batch * 1e3 / ms:6.1f} img/s)",
                      flush=True)
        computer.__class__ = FeatureComputer
        computer.close()
        torch._dynamo.reset()
        if args.device != "cpu":
            torch.cuda.empty_cache()
        (out / "extract_dtype.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
