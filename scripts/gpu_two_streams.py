"""H100 measurement for issue 13 (thirteenth session): batches in flight on several CUDA streams.

Why: at batch 16 x 480 px one forward is ~26.7 ms, and the 600 img/s goal needs 26.67. Its profile
(docs/benchmarks.md, runs 41 and 66): GEMMs ~14.3 ms near their roof, the attention kernel ~4.1 ms
latency-bound at 4 blocks an SM, the finish kernel bound by its stores, LayerNorms by memory, and
~0.5 ms with no kernel at all. On one stream each kernel waits for the last one's tail. An offline
job (millions of frames) needs throughput, not one batch's latency: a second batch on a second
stream can fill the SMs that a latency- or memory-bound kernel, or a kernel's last wave, leaves idle.

How: the shipped compiled path (fp16, every default, fused finish kernel) compiled without
CUDA-graph trees, which share one memory pool between graphs on the assumption that they run one
after another, then captured by hand into one CUDA graph per lane, each with its own pool, input
and output (trunk + finish, fp32 features). Timed with CUDA events over a run of batches:
- the shipped runner (`infer`, device-only), for reference;
- the lanes replayed one after another on one stream;
- lane i on stream i, so the lanes' batches overlap.
The shipped runner (timed the same way, one span over the run), sequential and concurrent alternate
(A-B-C-A-B-C...). The concurrent outputs must equal the sequential
ones to the bit (same kernels, same inputs), and lane 0's the shipped runner's within fp16 noise.

    PYTHONPATH=src python3 scripts/gpu_two_streams.py --configs 16x2 16x3 16x4 8x3 --size 480
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
from lseg_encoder.suites.timing import machine_info, time_runner
from lseg_encoder.weights.checkpoint import RawCheckpoint, load_state_strict
from lseg_encoder.weights.synthetic import synthetic_state_dict

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


class UngraphedRunner(CompiledRunner):
    """The shipped split path (trunk, then the finish kernel into owned memory) with the trunk compiled
    without CUDA graphs (`mode="default"`), so the caller can capture it into graphs of its own."""

    @property
    def _split(self) -> bool:
        return True


def capture_lanes(runner: UngraphedRunner, x: torch.Tensor, lanes: int) -> list[tuple]:
    """`lanes` CUDA graphs of trunk + finish, each with a private memory pool, input and output."""
    fns = runner._bucket(x)  # compiles and warms the bucket
    captured = []
    for _ in range(lanes):
        xi = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), runner._attention_kernel():
            for _ in range(2):
                runner._forward(fns, xi, torch.float32)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # captured on its own stream: PyTorch keeps one cuBLAS workspace per stream, and a graph replays
        # the workspace of the stream it was captured on (run 71 captured every lane on torch.cuda.graph's
        # one shared stream: the lanes' GEMMs then raced on one workspace and the features were wrong)
        with torch.cuda.graph(graph, stream=side), runner._attention_kernel():
            out = runner._forward(fns, xi, torch.float32)
        captured.append((graph, xi, out))
    torch.cuda.synchronize()
    return captured


def replay_ms(captured: list[tuple], streams: list[torch.cuda.Stream], batches: int) -> float:
    """ms per batch over `batches` replays, lane i on streams[i % len(streams)]."""
    main = torch.cuda.current_stream()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(main)
    for s in streams:
        s.wait_stream(main)
    for j in range(batches):
        i = j % len(captured)
        with torch.cuda.stream(streams[i % len(streams)]):
            captured[i][0].replay()
    for s in streams:
        main.wait_stream(s)
    end.record(main)
    end.synchronize()
    return start.elapsed_time(end) / batches


def runner_span_ms(runner: CompiledRunner, x: torch.Tensor, batches: int) -> float:
    """ms per batch over `batches` calls of the runner on one stream, timed as `replay_ms` times the lanes
    (one span of CUDA events; `time_runner` times each call apart, which leaves out any gap between them)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.inference_mode():
        start.record()
        for _ in range(batches):
            runner.run_on_device(x, torch.float32)
        end.record()
    end.synchronize()
    return start.elapsed_time(end) / batches


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


def outputs(captured: list[tuple]) -> list[torch.Tensor]:
    return [out.clone() for _, _, out in captured]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["16x2", "16x3", "16x4", "8x3"], help="BATCHxLANES")
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batches", type=int, default=24, help="batches a timed run, a multiple of every lane count")
    ap.add_argument("--deadline", type=float, default=500)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": call_info(), "args": vars(args), "configs": {}}
    save = lambda: (out_dir / "two_streams.json").write_text(json.dumps(results, indent=1, default=str))  # noqa: E731
    enc = synthetic_vitl16()
    shipped = CompiledRunner(enc, "fp16", "cuda").activate()
    ungraphed = UngraphedRunner(enc, "fp16", "cuda", mode="default").activate()
    log(f"shipped: fused_finish={shipped.fused_finish} attention={shipped.attention}; "
        f"ungraphed: fused_finish={ungraphed.fused_finish} split={ungraphed._split}")
    for config in args.configs:
        if time.perf_counter() - T0 > args.deadline:
            results["configs"][config] = "not run: deadline"
            log(f"{config}: not run (deadline)")
            continue
        batch, lanes = (int(v) for v in config.split("x"))
        row = results["configs"][config] = {"batch": batch, "lanes": lanes}
        with torch.inference_mode():
            gen = torch.Generator().manual_seed(batch)
            x = torch.rand(batch, 3, args.size, args.size, generator=gen).cuda() * 2 - 1
            t = time.perf_counter()
            ref = shipped.infer(x, to_host=False)
            st = time_runner(shipped, x, mode="device", warmup=5, iterations=40)
            row["shipped_ms"] = [st.median_ms, st.std_ms]
            log(f"{config}: shipped runner {st.median_ms:.3f} ± {st.std_ms:.3f} ms "
                f"({batch * 1e3 / st.median_ms:.1f} img/s; compiled in {time.perf_counter() - t:.0f} s)")
            t = time.perf_counter()
            captured = capture_lanes(ungraphed, x, lanes)
            log(f"{config}: {lanes} lanes captured in {time.perf_counter() - t:.0f} s")
        one = [torch.cuda.current_stream()]
        many = [torch.cuda.Stream() for _ in range(lanes)]
        replay_ms(captured, many, lanes)  # warm
        replay_ms(captured, one, lanes)
        diff = (captured[0][2] - ref).abs().max().item()
        replay_ms(captured, one, args.batches)
        seq_out = outputs(captured)
        replay_ms(captured, many, args.batches)
        con_out = outputs(captured)
        row["concurrent_equals_sequential"] = all(torch.equal(a, b) for a, b in zip(seq_out, con_out))
        row["lane0_vs_shipped_max_abs"] = diff
        log(f"{config}: concurrent outputs equal sequential: {row['concurrent_equals_sequential']}; "
            f"lane 0 vs shipped max |diff| {diff:.2e}")
        for rnd in range(args.rounds):
            for name, streams in (("shipped", None), ("sequential", one), ("concurrent", many)):
                ms = (runner_span_ms(shipped, x, args.batches) if streams is None
                      else replay_ms(captured, streams, args.batches))
                row.setdefault(name, []).append(ms)
                log(f"{config} round {rnd}: {name:10s} {ms:7.3f} ms a batch ({batch * 1e3 / ms:6.1f} img/s)")
        for name in ("shipped", "sequential", "concurrent"):
            ms = statistics.median(row[name])
            row[f"{name}_median_ms"] = ms
            row[f"{name}_img_s"] = batch * 1e3 / ms
        gain = row["sequential_median_ms"] / row["concurrent_median_ms"] - 1
        vs_shipped = row["shipped_median_ms"] / row["concurrent_median_ms"] - 1
        log(f"{config}: shipped {row['shipped_img_s']:.1f} img/s, sequential {row['sequential_img_s']:.1f} img/s, "
            f"concurrent {row['concurrent_img_s']:.1f} img/s ({100 * gain:+.1f} % over sequential, "
            f"{100 * vs_shipped:+.1f} % over shipped)")
        del captured, seq_out, con_out
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        save()
    save()


if __name__ == "__main__":
    main()
