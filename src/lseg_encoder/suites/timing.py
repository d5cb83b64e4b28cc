"""The one timing core shared by `lseg-encoder bench`, the pytest-benchmark suite and `verify`.

Two modes, reported separately because they answer different questions:
- device-only: the input already on the runner's device, the output left there; on CUDA each
  iteration is bracketed by CUDA events (what the GPU pipeline costs per frame);
- end-to-end: a host tensor in, host features out, copies included; timed with a host clock after
  synchronising (what a Python caller waits for).
On CPU both use `time.perf_counter`. Warm-up iterations (compilation, autotuning, allocator
growth) are excluded; results give median, mean ± std, p90 and min, with the machine they ran on.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

SCHEMA_VERSION = 1


@dataclass
class LatencyStats:
    backend: str
    precision: str
    mode: str  # "device" | "end-to-end"
    batch: int
    height: int
    width: int
    iterations: int
    warmup: int
    median_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    min_ms: float
    timer: str  # "cuda-events" | "perf_counter"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def short(self) -> str:
        return f"{self.median_ms:.2f} ± {self.std_ms:.2f} ms"


def summarize(times_ms: list[float]) -> dict:
    """median, mean, std, p90 (nearest rank) and min of per-iteration times: the one statistics rule."""
    ordered = sorted(times_ms)
    return {
        "median_ms": statistics.median(ordered),
        "mean_ms": statistics.fmean(ordered),
        "std_ms": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
        "p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "min_ms": ordered[0],
    }


def time_runner(runner, x: torch.Tensor, *, mode: str = "device", warmup: int = 10, iterations: int = 100,
                progress=None, max_seconds: float | None = None, out_dtype: torch.dtype | None = None) -> LatencyStats:
    """Time `runner.infer` on `x` (an activated runner). `progress` is called once per iteration.

    `max_seconds` bounds the timed loop by time as well as by count (at least 3 iterations run):
    a slow backend (ONNX Runtime on the CPU at 0.6 s a call) then costs seconds, not minutes.
    `out_dtype` is passed to `infer` (e.g. torch.float16: features written in fp16).
    """
    if mode not in ("device", "end-to-end"):
        raise ValueError(f"mode must be 'device' or 'end-to-end', got {mode!r}")
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    cuda = runner.device.type == "cuda"
    if mode == "device":
        x_in = x.to(runner.device)
        call = lambda: runner.infer(x_in, to_host=False, out_dtype=out_dtype)  # noqa: E731
    else:
        x_in = x.cpu()
        call = lambda: runner.infer(x_in, to_host=True, out_dtype=out_dtype)  # noqa: E731
    for _ in range(warmup):
        call()
    runner.synchronize()
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    events = cuda and mode == "device"
    spans, times = [], []
    for i in range(iterations):
        if deadline is not None and i >= 3 and time.perf_counter() > deadline:
            break
        if events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            spans.append((start, end))
        else:
            t0 = time.perf_counter()
            call()
            runner.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        if progress:
            progress()
    if events:
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in spans]
    b, _, h, w = x.shape
    return LatencyStats(runner.backend, runner.precision, mode, b, h, w, len(times), warmup,
                        timer="cuda-events" if events else "perf_counter", **summarize(times))


def time_lanes(runner, x: torch.Tensor, lanes: int, *, batches: int = 24, rounds: int = 5, warmup: int = 1,
               out_dtype: torch.dtype = torch.float32) -> LatencyStats:
    """Device-only ms a batch with `lanes` batches in flight (`CompiledRunner.graph_lanes`, CUDA only).

    Batches on several streams overlap, so none has a time of its own: each sample is one span of CUDA
    events over `batches` replays (lane j % lanes on its stream), divided by `batches`; a span is the mean
    of its batches, not a median. `lanes=1` replays the same graph one batch after another: the baseline
    to set beside it, timed the same way."""
    graph_lanes = runner.graph_lanes(x, lanes, out_dtype)
    main = torch.cuda.current_stream(graph_lanes.device)

    def span() -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(main)
        for stream in graph_lanes.streams:
            stream.wait_stream(main)
        for j in range(batches):
            graph_lanes.replay(j % lanes)
        for stream in graph_lanes.streams:
            main.wait_stream(stream)
        end.record(main)
        end.synchronize()
        return start.elapsed_time(end) / batches

    for _ in range(warmup):
        span()
    times = [span() for _ in range(rounds)]
    b, _, h, w = x.shape
    return LatencyStats(runner.backend, runner.precision, "device", b, h, w, len(times), warmup, timer="cuda-events",
                        extra={"lanes": lanes, "batches_per_sample": batches}, **summarize(times))


def encoder_flops(config, height: int, width: int, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one forward, counted by torch's FlopCounterMode on the meta
    device, so it costs no memory or time even for ViT-L at 910 px."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..model import build_encoder

    with torch.device("meta"):
        model = build_encoder(config)
        x = torch.empty(batch, 3, height, width)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    return int(counter.get_total_flops())


def machine_info() -> dict:
    """CPU, GPU, driver, CUDA and library versions, recorded with every result."""
    info = {
        "schema_version": SCHEMA_VERSION,
        "host": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": None,  # every record names the GPU fields, None where there is no GPU
        "gpu_capability": None,
        "driver": None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_capability"] = f"{props.major}.{props.minor}"
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    for module, key in (("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt"), ("tensorrt_rtx", "tensorrt_rtx"),
                        ("onnx", "onnx")):
        try:
            info[key] = __import__(module).__version__
        except Exception:  # not installed, or a stub wheel that fails on import
            info[key] = None
    return info
