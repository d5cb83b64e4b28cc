"""A latency report over (backend × size × mode): collect it with the timing core, then render it.

`run_benchmarks` is what `lseg-encoder bench` does, callable from Python (`reports.bench` writes it):

    report = run_benchmarks(load_encoder(ckpt), ["torch", "onnxruntime"], [(260, 260)], device="cpu")
    print(format_table(report, "device"))
    write_report(report, "reports/bench")          # JSON + markdown + PNG, each written atomically

A backend that cannot run on this machine (no CUDA, package or runner module missing) is recorded as
*skipped* with the exact reason, not as an error: one command line then serves the CPU box and the
H100. A backend that breaks while running is recorded as *failed* with its message, and the other
backends still run; only a report with no measurement at all is an error.

The FLOP floor is FLOPs / peak: how fast the encoder would be if every FLOP ran at the card's
measured fp16 matmul rate. It is drawn and put in ratios only when a peak is known (`--peak-tflops`,
or a card in `KNOWN_PEAK_TFLOPS`), never guessed.

`lanes=N` (N >= 2) adds device-only throughput with N batches in flight on N CUDA streams
(`runners.lanes`) beside one lane timed the same way, for the backends that have lanes (compiled on
CUDA); the others are listed as skipped for it, with the reason.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..backends import check_backends
from ..errors import LsegError
from ..runners.lanes import check_lane_count
from ..sizes import size_label, size_name
from .sweep import RunnerPool, Skip, first_line, sweep
from .timing import LatencyStats, encoder_flops, machine_info, time_lanes, time_runner

MODES = ("device", "end-to-end")
MODE_TITLES = {"device": "device-only", "end-to-end": "end-to-end"}

# GPU name substring -> (dense fp16 TFLOP/s, where the number comes from). Measured numbers only.
KNOWN_PEAK_TFLOPS: dict[str, tuple[float, str]] = {
    "H100": (790.0, "fp16 dense matmul rate measured on the project's H100 (issue 7)"),
}


@dataclass
class BenchReport:
    backbone: str
    weights: str
    synthetic: bool
    device: str
    batch: int
    iterations: int
    warmup: int
    modes: list[str]
    sizes: list[tuple[int, int]]
    backends: list[str]
    machine: dict
    flops: dict[str, int] = field(default_factory=dict)  # "HxW" -> FLOPs of one forward at `batch`
    peak_tflops: float | None = None
    peak_source: str | None = None
    results: list[LatencyStats] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    lanes: int = 1  # > 1: results of mode "lanes" as well (see the module docstring)

    def to_dict(self) -> dict:
        """The JSON body (the writer adds schema and version; `machine` is part of the report)."""
        data = asdict(self)
        data["results"] = [r.to_dict() for r in self.results]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BenchReport:
        """Read a report back from its JSON (to re-render, or to merge runs from several machines)."""
        from ..reports.writer import check_schema

        check_schema(data, "bench")
        fields = {k: v for k, v in data.items() if k not in ("schema", "lseg_encoder_version")}
        fields["sizes"] = [tuple(s) for s in fields["sizes"]]
        fields["results"] = [LatencyStats(**r) for r in fields["results"]]
        fields["skipped"] = [Skip(**{**s, "size": tuple(s["size"]) if s.get("size") else None})
                             for s in fields["skipped"]]
        return cls(**fields)

    def floor_ms(self, height: int, width: int) -> float | None:
        flops = self.flops.get(size_name((height, width)))
        if not self.peak_tflops or flops is None:
            return None
        return flops / (self.peak_tflops * 1e12) * 1e3

    def result(self, backend: str, size: tuple[int, int], mode: str) -> LatencyStats | None:
        return next((r for r in self.results
                     if r.backend == backend and (r.height, r.width) == tuple(size) and r.mode == mode), None)

    def skip_reason(self, backend: str, size: tuple[int, int], mode: str) -> Skip | None:
        for s in self.skipped:
            if s.backend == backend and s.size in (None, tuple(size)) and s.mode in (None, mode):
                return s
        return None

    @property
    def hardware(self) -> str:
        m = self.machine
        return m.get("gpu") if self.device.startswith("cuda") and m.get("gpu") else f"{m.get('cpu')} CPU"


def known_peak(machine: dict) -> tuple[float | None, str | None]:
    """The peak fp16 TFLOP/s of the machine's GPU if this project has measured it."""
    gpu = machine.get("gpu") or ""
    for name, (tflops, source) in KNOWN_PEAK_TFLOPS.items():
        if name in gpu:
            return tflops, f"{gpu}: {source}"
    return None, None


def run_benchmarks(encoder, backends: Sequence[str], sizes: Sequence[tuple[int, int]], *, device: str = "cpu",
                   batch: int = 1, iterations: int = 100, warmup: int = 10, modes: Sequence[str] = MODES,
                   peak_tflops: float | None = None, progress: bool = True, explicit: Sequence[str] = (),
                   progress_lines: Callable[[str], None] | None = None, max_seconds: float | None = None,
                   compile_mode: str | None = None, lanes: int = 1) -> BenchReport:
    """Time every backend at every size in every mode; see the module docstring.

    Sizes must already satisfy the backbone's size rule (`sizes.check_size`). Backends in `explicit`
    were named by the user and run even where default sweeps leave them out (`sweep.default_skip_reason`).
    `max_seconds` bounds each timing cell by time as well as by count.
    """
    from tqdm import tqdm

    say = progress_lines or (lambda text: tqdm.write(text, file=sys.stderr))
    check_backends(backends)
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        raise LsegError(f"unknown mode(s) {', '.join(bad_modes)}; use {' / '.join(MODES)}")
    check_lane_count(lanes)
    sizes = [(int(h), int(w)) for h, w in sizes]
    machine = machine_info()
    source = None
    if peak_tflops:
        source = "given on the command line (--peak-tflops)"
    else:
        peak_tflops, source = known_peak(machine) if str(device).startswith("cuda") else (None, None)
    report = BenchReport(
        backbone=encoder.config.name, weights=str(getattr(encoder, "source", "")),
        synthetic=bool(getattr(encoder, "synthetic", False)), device=str(device), batch=batch,
        iterations=iterations, warmup=warmup, modes=list(modes), sizes=sizes, backends=list(backends),
        machine=machine, peak_tflops=peak_tflops, peak_source=source,
        flops={size_name(s): encoder_flops(encoder.config, s[0], s[1], batch) for s in sizes}, lanes=lanes,
    )
    generator = torch.Generator().manual_seed(0)
    inputs = {s: torch.randn(batch, 3, *s, generator=generator) for s in sizes}
    bar = tqdm(total=len(backends) * len(sizes) * len(modes) * iterations, unit="it", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    pool = RunnerPool(encoder, device, batch=batch, explicit=explicit, compile_mode=compile_mode)
    steps = len(modes) * iterations

    def measure(backend: str, size, runner) -> None:
        _bench_size(report, runner, backend, size, inputs[size], bar, say, max_seconds)

    def skipped(skip: Skip) -> None:
        report.skipped.append(skip)
        say(skip.line())
        bar.update(steps * (len(sizes) if skip.size is None else 1))

    try:
        sweep(pool, backends, sizes, measure, on_skip=skipped)
    finally:
        bar.close()
    return report


def _bench_size(report: BenchReport, runner, backend: str, size, x: torch.Tensor, bar, say,
                max_seconds: float | None) -> None:
    bar.set_description(f"{backend} {size_label(size)} first call")
    try:
        t0 = time.perf_counter()
        runner.infer(x.to(runner.device), to_host=False)  # compiles a bucket / builds lazily, outside timing
        runner.synchronize()
        first_call_s = time.perf_counter() - t0
    except Exception as exc:
        _record_failure(report, backend, size, None, exc, say)
        bar.update(len(report.modes) * report.iterations)
        return
    compile_seconds = getattr(runner, "compile_seconds", {}).get((report.batch, *size))
    for mode in report.modes:
        bar.set_description(f"{backend} {size_label(size)} {MODE_TITLES[mode]}")
        done = 0

        def tick():
            nonlocal done
            done += 1
            bar.update(1)

        try:
            stats = time_runner(runner, x, mode=mode, warmup=report.warmup, iterations=report.iterations,
                                progress=tick, max_seconds=max_seconds)
        except Exception as exc:
            _record_failure(report, backend, size, mode, exc, say)
            bar.update(report.iterations - done)
            continue
        bar.update(report.iterations - done)  # a cell cut short by max_seconds
        _annotate(report, stats, runner, backend, size, first_call_s, compile_seconds)
        report.results.append(stats)
    if report.lanes > 1:
        bar.set_description(f"{backend} {size_label(size)} {report.lanes} lanes")
        _bench_lanes(report, runner, backend, size, x, say)


def _bench_lanes(report: BenchReport, runner, backend: str, size, x: torch.Tensor, say) -> None:
    """Device-only ms a batch with `report.lanes` batches in flight, and with one lane timed alike."""
    if not hasattr(runner, "graph_lanes") or runner.device.type != "cuda":
        skip = Skip(backend, "lanes need the compiled backend on CUDA", size=tuple(size), mode="lanes")
        report.skipped.append(skip)
        say(skip.line())
        return
    try:
        x = x.to(runner.device)
        one = time_lanes(runner, x, 1)
        stats = time_lanes(runner, x, report.lanes)
    except Exception as exc:
        _record_failure(report, backend, size, "lanes", exc, say)
        return
    finally:
        runner.drop_lanes()  # the next size gets the memory
    stats.mode = "lanes"
    _annotate(report, stats, runner, backend, size, None, None)
    stats.extra.update({"one_lane_ms": one.median_ms, "one_lane_images_per_s": report.batch * 1e3 / one.median_ms,
                        "gain": one.median_ms / stats.median_ms - 1})
    report.results.append(stats)


def _annotate(report: BenchReport, stats: LatencyStats, runner, backend: str, size, first_call_s, compile_seconds):
    """What every result carries beside its times."""
    stats.backend = backend  # the BACKENDS name the user asked for (runner.backend may be a flavour)
    floor = report.floor_ms(*size)
    stats.extra.update({
        "runner": runner.name,
        "runner_device": str(runner.device),
        "providers": getattr(runner, "providers", None),
        "flops": report.flops[size_name(size)],
        "floor_ms": floor,
        "floor_ratio": stats.median_ms / floor if floor else None,
        "images_per_s": report.batch * 1e3 / stats.median_ms if stats.median_ms > 0 else None,
        "first_call_s": first_call_s,
        "compile_seconds": compile_seconds,
    })


def _record_failure(report: BenchReport, backend: str, size, mode, exc: Exception, say) -> None:
    if not isinstance(exc, LsegError):
        traceback.print_exc(file=sys.stderr)
    skip = Skip(backend, first_line(exc), status="failed", size=tuple(size), mode=mode)
    report.skipped.append(skip)
    say(skip.line())
