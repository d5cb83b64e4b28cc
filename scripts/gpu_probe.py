"""One-call GPU probe: eager fp32/fp16 and compiled fp16 latency + fidelity of the full ViT-L/16 at
the seed sizes, with the measured fp16 matmul peak as the FLOP floor. Results go to $OUT as JSON
after every size, so a run cut short still reports what it measured.

Usage on the GPU machine: PYTHONPATH=src python3 scripts/gpu_probe.py [--sizes ...] [--modes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from lseg_encoder.fidelity.metrics import feature_metrics
from lseg_encoder.model import build_encoder
from lseg_encoder.runners import TorchRunner
from lseg_encoder.runners.compiled_runner import CompiledRunner
from lseg_encoder.suites.timing import encoder_flops, machine_info, time_runner
from lseg_encoder.weights.checkpoint import RawCheckpoint, load_state_strict
from lseg_encoder.weights.synthetic import synthetic_state_dict


def matmul_peak_tflops(n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[260, 390, 520, 650, 780, 910])
    ap.add_argument("--modes", nargs="+", default=["reduce-overhead"])
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--batches", type=int, nargs="*", default=[])
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    info = machine_info()
    peak = matmul_peak_tflops()
    info["fp16_matmul_peak_tflops"] = peak
    print(f"{info['gpu']} driver {info.get('driver')} torch {info['torch']} fp16 peak {peak:.0f} TFLOP/s", flush=True)
    t0 = time.perf_counter()
    sd = synthetic_state_dict("clip_vitl16_384", include=lambda k: not k.startswith("net.clip"))
    enc = build_encoder("clip_vitl16_384")
    load_state_strict(enc, RawCheckpoint(Path("synthetic"), {k[4:]: v for k, v in sd.items()}), enc.config)
    print(f"weights {time.perf_counter() - t0:.1f}s", flush=True)
    results = {"machine": info, "rows": []}
    eager32 = TorchRunner(enc, "fp32", "cuda").activate()
    eager16 = TorchRunner(enc, "fp16", "cuda").activate()
    compiled = {m: CompiledRunner(enc, "fp16", "cuda", mode=m).activate() for m in args.modes}
    for s in args.sizes:
        x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s)) * 2 - 1
        flops = encoder_flops(enc.config, s, s)
        floor = flops / (peak * 1e12) * 1e3
        ref = eager32.infer(x)
        row = {"size": s, "gflops": flops / 1e9, "floor_ms": floor}
        candidates = [("eager-fp32", eager32), ("eager-fp16", eager16)]
        candidates += [(f"compiled-{m}", r) for m, r in compiled.items()]
        for name, runner in candidates:
            got = runner.infer(x)
            met = feature_metrics(got, ref)
            iters = args.iterations if "compiled" in name else max(10, args.iterations // 5)
            st = time_runner(runner, x, mode="device", warmup=5, iterations=iters)
            e2e = time_runner(runner, x, mode="end-to-end", warmup=3, iterations=max(10, iters // 5))
            row[name] = {"device": st.to_dict(), "e2e": e2e.to_dict(), "pixel_cos_p01": met.pixel_cos_p01,
                         "pixel_cos_min": met.pixel_cos_min, "rel_l2": met.rel_l2,
                         "compile_s": getattr(runner, "compile_seconds", {}).get((1, s, s))}
            print(f"{s:4d} {name:28s} dev {st.median_ms:7.2f} ± {st.std_ms:5.2f} ms (p90 {st.p90_ms:7.2f})  "
                  f"e2e {e2e.median_ms:7.2f} ms  floor x{st.median_ms / floor:5.1f}  p0.1cos {met.pixel_cos_p01:.6f}"
                  f"  compile {row[name]['compile_s']}", flush=True)
        results["rows"].append(row)
        (out / "gpu_probe.json").write_text(json.dumps(results, indent=1, default=str))
    for b in args.batches:
        for m, runner in compiled.items():
            x = torch.rand(b, 3, 480, 480) * 2 - 1
            st = time_runner(runner, x, mode="device", warmup=3, iterations=30)
            rate = b / st.median_ms * 1e3
            print(f"batch {b:2d} 480px compiled-{m}: {st.median_ms:.2f} ms = {rate:.0f} img/s", flush=True)
            results.setdefault("batch", []).append({"batch": b, "mode": m, "device": st.to_dict(),
                                                    "images_per_s": b / st.median_ms * 1e3})
            (out / "gpu_probe.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
