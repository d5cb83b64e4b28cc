"""H100 measurement for issue 13 (thirteenth session): the library's lanes (`CompiledRunner.graph_lanes`).

Why: runs 71-73 (scripts/gpu_two_streams.py at commit c878c99, the experiment that became
`runners/lanes.py`) found that two batches in flight on two CUDA streams give 3-4 % more images a
second at batch 16 x 480 px than the same graphs one after another. This
measures what shipped from that, on the full ViT-L/16 with synthetic weights, fp16, every default:
- device-only throughput, ms a batch over spans of CUDA events (`suites.timing.time_lanes`) with 1, 2
  and 3 lanes, and the compiled runner itself timed the same way (its `run_on_device`, one span per
  round), A-B-C-D per round;
- exactness: lane outputs equal `run_on_device` to the bit;
- end-to-end, host fp16 features through `stream_infer` with 1 and 2 lanes (`time_stream`).

    PYTHONPATH=src python3 scripts/gpu_lanes.py --configs 16x480 8x480 1x520 1x260
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch

from lseg_encoder.model import build_encoder
from lseg_encoder.runners.compiled_runner import CompiledRunner
from lseg_encoder.runners.pipeline import time_stream
from lseg_encoder.suites.timing import machine_info, time_lanes
from lseg_encoder.weights.checkpoint import RawCheckpoint, load_state_strict
from lseg_encoder.weights.synthetic import synthetic_state_dict

T0 = time.perf_counter()
LANES = (1, 2, 3)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def call_info() -> dict:
    """The machine, the card and the time of this call (every figure names them), logged too."""
    info = machine_info()
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                                         "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    info["utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    log(f"{info['nvidia_smi']} torch {info['torch']}")
    return info


def synthetic_vitl16():
    """The full ViT-L/16 encoder with synthetic weights (the image half of the checkpoint only)."""
    sd = synthetic_state_dict("clip_vitl16_384", include=lambda k: not k.startswith("net.clip"))
    enc = build_encoder("clip_vitl16_384")
    load_state_strict(enc, RawCheckpoint(Path("synthetic"), {k[4:]: v for k, v in sd.items()}), enc.config)
    return enc


def time_calls(call, iterations: int) -> list[float]:
    """ms a call from CUDA events, calls queued back to back (one synchronisation at the end), as
    `suites.timing.time_runner` times: host-side launch cost is hidden while the GPU is busy."""
    events = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def runner_span_ms(runner: CompiledRunner, x: torch.Tensor, batches: int) -> float:
    """ms a batch over `batches` calls of `run_on_device` in one span of CUDA events, as `time_lanes` times
    the lanes (`time_runner` times each call apart, which leaves out any gap between calls)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.inference_mode():
        start.record()
        for _ in range(batches):
            runner.run_on_device(x, torch.float32)
        end.record()
    end.synchronize()
    return start.elapsed_time(end) / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["16x480", "8x480", "1x520", "1x260"], help="BATCHxSIZE")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--deadline", type=float, default=420)
    ap.add_argument("--stream-only", action="store_true",
                    help="only the host-output stream, each lane count twice (pinned buffers warm the second time)")
    ap.add_argument("--stream-lanes", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": call_info(), "args": vars(args), "configs": {}}
    save = lambda: (out_dir / "lanes.json").write_text(json.dumps(results, indent=1, default=str))  # noqa: E731
    runner = CompiledRunner(synthetic_vitl16(), "fp16", "cuda").activate()
    for config in args.configs:
        if time.perf_counter() - T0 > args.deadline:
            results["configs"][config] = "not run: deadline"
            log(f"{config}: not run (deadline)")
            continue
        batch, size = (int(v) for v in config.split("x"))
        row = results["configs"][config] = {"batch": batch, "size": size}
        batches = max(8, 96 // batch)  # a span of at least ~0.1 s
        gen = torch.Generator().manual_seed(batch * size)
        x_host = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        x = x_host.cuda()
        if args.stream_only:
            for rep in (1, 2):
                for count in args.stream_lanes:
                    ms = time_stream(runner, x_host, frames=max(12, 96 // batch), warmup=4,
                                     out_dtype=torch.float16, lanes=count)
                    row.setdefault(f"stream_fp16_lanes{count}_ms", []).append(ms)
                    log(f"{config} {rep}: stream_infer fp16 host output, {count} lane(s): {ms:.3f} ms a batch "
                        f"({batch * 1e3 / ms:.1f} img/s)")
            runner.drop_lanes()
            save()
            continue
        t = time.perf_counter()
        want = runner.run_on_device(x, torch.float32)
        for count in LANES:
            lanes = runner.graph_lanes(x, count, torch.float32)
            for lane in range(count):
                lanes.submit(lane, x).synchronize()
                row.setdefault("equal_to_run_on_device", []).append(torch.equal(lanes.outputs[lane], want))
        log(f"{config}: compiled and captured in {time.perf_counter() - t:.0f} s; lanes equal run_on_device "
            f"to the bit: {all(row['equal_to_run_on_device'])}")
        del want
        for rnd in range(args.rounds):
            ms = runner_span_ms(runner, x, batches)
            row.setdefault("runner", []).append(ms)
            line = [f"runner {batch * 1e3 / ms:6.1f}"]
            for count in LANES:
                st = time_lanes(runner, x, count, batches=batches, rounds=1, warmup=1 if rnd == 0 else 0)
                row.setdefault(f"lanes{count}", []).append(st.median_ms)
                line.append(f"{count} lane(s) {batch * 1e3 / st.median_ms:6.1f}")
            log(f"{config} round {rnd}: img/s " + ", ".join(line))
        summary = {name: statistics.median(row[name]) for name in ["runner", *(f"lanes{c}" for c in LANES)]}
        row["median_ms"] = summary
        log(f"{config}: median ms a batch " + ", ".join(f"{k} {v:.3f} ({batch * 1e3 / v:.1f} img/s)"
                                                       for k, v in summary.items()))
        for count in (1, 2):
            if time.perf_counter() - T0 > args.deadline:
                break
            frames = max(12, 48 // batch)
            ms = time_stream(runner, x_host, frames=frames, warmup=4, out_dtype=torch.float16, lanes=count)
            row[f"stream_fp16_lanes{count}_ms"] = ms
            log(f"{config}: stream_infer fp16 host output, {count} lane(s): {ms:.3f} ms a batch "
                f"({batch * 1e3 / ms:.1f} img/s)")
        runner.drop_lanes()  # the next shape's graphs get the memory
        save()
    save()


if __name__ == "__main__":
    main()
