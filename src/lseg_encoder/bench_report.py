"""A latency report over (backend × size × mode): collect it with the timing core, then render it.

`run_benchmarks` is what `lseg-encoder bench` does, callable from Python:

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
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .errors import BackendUnavailable, LsegError
from .store.atomic import atomic_path
from .suites.timing import LatencyStats, encoder_flops, machine_info, time_runner

REPORT_SCHEMA_VERSION = 1
MODES = ("device", "end-to-end")
MODE_TITLES = {"device": "device-only", "end-to-end": "end-to-end"}

# GPU name substring -> (dense fp16 TFLOP/s, where the number comes from). Measured numbers only.
KNOWN_PEAK_TFLOPS: dict[str, tuple[float, str]] = {
    "H100": (790.0, "fp16 dense matmul rate measured on the project's H100 (issue 7)"),
}

# Backends whose artefact fixes the input shape: one runner (engine, package) per size.
PER_SIZE_BACKENDS = ("tensorrt", "tensorrt-fp32", "aoti")


@dataclass
class SkippedRun:
    """A backend (at one size, or at every size when `size` is None) that produced no numbers."""

    backend: str
    reason: str
    status: str = "skipped"  # "skipped": cannot run here; "failed": broke while building or running
    size: tuple[int, int] | None = None
    mode: str | None = None


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
    skipped: list[SkippedRun] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["results"] = [r.to_dict() for r in self.results]
        return {"schema_version": REPORT_SCHEMA_VERSION, "kind": "lseg-encoder-bench", **data}

    @classmethod
    def from_dict(cls, data: dict) -> BenchReport:
        """Read a report back from its JSON (to re-render, or to merge runs from several machines)."""
        if data.get("kind") != "lseg-encoder-bench" or data.get("schema_version") != REPORT_SCHEMA_VERSION:
            raise LsegError(f"not an lseg-encoder bench report of schema {REPORT_SCHEMA_VERSION} "
                            f"(kind {data.get('kind')!r}, schema {data.get('schema_version')!r})")
        fields = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        fields["sizes"] = [tuple(s) for s in fields["sizes"]]
        fields["results"] = [LatencyStats(**r) for r in fields["results"]]
        fields["skipped"] = [SkippedRun(**{**s, "size": tuple(s["size"]) if s.get("size") else None})
                             for s in fields["skipped"]]
        return cls(**fields)

    def floor_ms(self, height: int, width: int) -> float | None:
        flops = self.flops.get(size_key((height, width)))
        if not self.peak_tflops or flops is None:
            return None
        return flops / (self.peak_tflops * 1e12) * 1e3

    def result(self, backend: str, size: tuple[int, int], mode: str) -> LatencyStats | None:
        return next((r for r in self.results
                     if r.backend == backend and (r.height, r.width) == tuple(size) and r.mode == mode), None)

    def skip_reason(self, backend: str, size: tuple[int, int], mode: str) -> SkippedRun | None:
        for s in self.skipped:
            if s.backend == backend and s.size in (None, tuple(size)) and s.mode in (None, mode):
                return s
        return None

    @property
    def hardware(self) -> str:
        m = self.machine
        return m.get("gpu") if self.device.startswith("cuda") and m.get("gpu") else f"{m.get('cpu')} CPU"


def size_key(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def size_label(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else size_key(size)


def known_peak(machine: dict) -> tuple[float | None, str | None]:
    """The peak fp16 TFLOP/s of the machine's GPU if this project has measured it."""
    gpu = machine.get("gpu") or ""
    for name, (tflops, source) in KNOWN_PEAK_TFLOPS.items():
        if name in gpu:
            return tflops, f"{gpu}: {source}"
    return None, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:400]}" if text else type(exc).__name__


def _open_runner(backend: str, encoder, *, device: str, size: tuple[int, int], batch: int):
    """An activated runner, or a SkippedRun saying why there is none."""
    from .runners import make_runner

    try:
        runner = make_runner(backend, encoder, device=device, size=size, batch=batch)
        runner.activate()
    except BackendUnavailable as exc:
        return SkippedRun(backend, str(exc))
    except ImportError as exc:  # a runner module (or a name in it) that this build does not have yet
        return SkippedRun(backend, f"not available in this build ({exc})")
    except LsegError as exc:
        return SkippedRun(backend, _first_line(exc), status="failed")
    except Exception as exc:  # a bug in one backend must not cost the others' numbers
        traceback.print_exc(file=sys.stderr)
        return SkippedRun(backend, _first_line(exc), status="failed")
    want = torch.device(device).type
    if runner.device.type != want:
        providers = getattr(runner, "providers", None)
        runner.deactivate()
        return SkippedRun(backend, f"would run on {runner.device.type}, not {want}"
                          + (f" (providers here: {', '.join(providers)})" if providers else ""))
    return runner


def run_benchmarks(encoder, backends: Sequence[str], sizes: Sequence[tuple[int, int]], *, device: str = "cpu",
                   batch: int = 1, iterations: int = 100, warmup: int = 10, modes: Sequence[str] = MODES,
                   peak_tflops: float | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> BenchReport:
    """Time every backend at every size in every mode; see the module docstring.

    Sizes must already satisfy the backbone's size rule (`sizes.check_size`). The encoder stays on
    the CPU between backends, so ONNX export and engine builds see the same module.
    """
    from tqdm import tqdm

    from .runners import BACKENDS

    log = log or (lambda text: tqdm.write(text, file=sys.stderr))
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise LsegError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        raise LsegError(f"unknown mode(s) {', '.join(bad_modes)}; use {' / '.join(MODES)}")
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
        flops={size_key(s): encoder_flops(encoder.config, s[0], s[1], batch) for s in sizes},
    )
    generator = torch.Generator().manual_seed(0)
    inputs = {s: torch.randn(batch, 3, *s, generator=generator) for s in sizes}
    bar = tqdm(total=len(backends) * len(sizes) * len(modes) * iterations, unit="it", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for backend in backends:
            _bench_backend(report, encoder, backend, inputs, bar, log)
    finally:
        bar.close()
    return report


def _bench_backend(report: BenchReport, encoder, backend: str, inputs: dict, bar, log) -> None:
    runner = None
    per_size = backend in PER_SIZE_BACKENDS
    steps = len(report.modes) * report.iterations
    try:
        for done, (size, x) in enumerate(inputs.items()):
            if runner is None or per_size:
                if runner is not None:
                    runner.deactivate()
                bar.set_description(f"{backend} {size_label(size)} build")
                runner = _open_runner(backend, encoder, device=report.device, size=size, batch=report.batch)
                if isinstance(runner, SkippedRun):
                    skip, runner = runner, None
                    # "cannot run here" holds for every size; a failed per-size build is that size's alone
                    if per_size and skip.status == "failed":
                        skip.size = size
                    report.skipped.append(skip)
                    log(f"{backend}{' ' + size_label(size) if skip.size else ''}: {skip.status}: {skip.reason}")
                    if skip.size is None:
                        bar.update(steps * (len(inputs) - done))
                        return
                    bar.update(steps)
                    continue
            _bench_size(report, runner, backend, size, x, bar, log)
    finally:
        if runner is not None:
            runner.deactivate()
        encoder.to("cpu")  # TorchRunner moves the shared module to the device; later backends export from CPU
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _bench_size(report: BenchReport, runner, backend: str, size, x: torch.Tensor, bar, log) -> None:
    import time

    bar.set_description(f"{backend} {size_label(size)} first call")
    try:
        t0 = time.perf_counter()
        runner.infer(x.to(runner.device), to_host=False)  # compiles a bucket / builds lazily, outside timing
        runner.synchronize()
        first_call_s = time.perf_counter() - t0
    except Exception as exc:
        _record_failure(report, backend, size, None, exc, log)
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
                                progress=tick)
        except Exception as exc:
            _record_failure(report, backend, size, mode, exc, log)
            bar.update(report.iterations - done)
            continue
        stats.backend = backend  # the BACKENDS name the user asked for (runner.backend may be a flavour)
        floor = report.floor_ms(*size)
        stats.extra.update({
            "runner": runner.name,
            "runner_device": str(runner.device),
            "providers": getattr(runner, "providers", None),
            "flops": report.flops[size_key(size)],
            "floor_ms": floor,
            "floor_ratio": stats.median_ms / floor if floor else None,
            "images_per_s": report.batch * 1e3 / stats.median_ms if stats.median_ms > 0 else None,
            "first_call_s": first_call_s,
            "compile_seconds": compile_seconds,
        })
        report.results.append(stats)


def _record_failure(report: BenchReport, backend: str, size, mode, exc: Exception, log) -> None:
    if not isinstance(exc, LsegError):
        traceback.print_exc(file=sys.stderr)
    skip = SkippedRun(backend, _first_line(exc), status="failed", size=tuple(size), mode=mode)
    report.skipped.append(skip)
    log(f"{backend} {size_label(size)}{' ' + mode if mode else ''}: failed: {skip.reason}")


# rendering ---------------------------------------------------------------------------------------


def _cell(report: BenchReport, backend: str, size, mode: str, *, ratio: bool = False) -> str:
    r = report.result(backend, size, mode)
    if r is not None:
        text = r.short().removesuffix(" ms")
        floor_ratio = r.extra.get("floor_ratio")
        return text + (f" ({floor_ratio:.1f}×)" if ratio and floor_ratio else "")
    skip = report.skip_reason(backend, size, mode)
    return skip.status if skip else "-"


def _table_rows(report: BenchReport, mode: str, *, ratio: bool) -> tuple[list[str], list[list[str]]]:
    backends = [b for b in report.backends if any(r.backend == b for r in report.results)]
    header = ["size"] + backends
    floor = report.peak_tflops is not None
    if floor:
        header.append("FLOP floor")
    rows = []
    for size in report.sizes:
        row = [size_label(size)] + [_cell(report, b, size, mode, ratio=ratio) for b in backends]
        if floor:
            row.append(f"{report.floor_ms(*size):.3f}")
        rows.append(row)
    return header, rows


def table_title(report: BenchReport, mode: str) -> str:
    synthetic = ", SYNTHETIC weights" if report.synthetic else ""
    return (f"{MODE_TITLES[mode]} latency, ms (median ± std of {report.iterations}), batch {report.batch} - "
            f"{report.backbone}{synthetic} on {report.hardware}")


def format_table(report: BenchReport, mode: str) -> str:
    """The seed-style plain-text table: one row per size, one column per backend."""
    header, rows = _table_rows(report, mode, ratio=False)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [table_title(report, mode), "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def format_skipped(report: BenchReport) -> str:
    lines = []
    for s in report.skipped:
        where = "all sizes" if s.size is None else size_label(s.size) + (f" {s.mode}" if s.mode else "")
        lines.append(f"{s.backend} ({where}) {s.status}: {s.reason}")
    return "\n".join(lines)


def format_markdown(report: BenchReport) -> str:
    m = report.machine
    lines = [f"# Latency: {report.backbone} on {report.hardware}", ""]
    lines.append(f"- date {m.get('date')}, host `{m.get('host')}`, CPU {m.get('cpu')} ({m.get('cpu_count')} cores, "
                 f"{m.get('torch_threads')} torch threads), GPU {m.get('gpu') or 'none'}"
                 + (f" (driver {m['driver']})" if m.get("driver") else ""))
    versions = ", ".join(f"{k} {m[k]}" for k in ("torch", "cuda", "onnxruntime", "tensorrt", "tensorrt_rtx")
                         if m.get(k))
    lines.append(f"- {versions}")
    lines.append(f"- weights: {'SYNTHETIC ' if report.synthetic else ''}`{Path(report.weights).name}`, "
                 f"batch {report.batch}, {report.warmup} warm-up + {report.iterations} timed iterations, "
                 f"device `{report.device}`")
    if report.peak_tflops:
        lines.append(f"- FLOP floor = FLOPs / {report.peak_tflops:g} TFLOP/s ({report.peak_source}); "
                     "cells show (× floor)")
    for mode in report.modes:
        header, rows = _table_rows(report, mode, ratio=True)
        lines += ["", f"## {table_title(report, mode)}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    compiled = [r for r in report.results if r.extra.get("compile_seconds") and r.mode == report.modes[0]]
    if compiled:
        lines += ["", "## Compile time per size bucket (s, excluded from latency)", "", "| backend | size | s |",
                  "|---|---|---|"]
        lines += [f"| {r.backend} | {size_label((r.height, r.width))} | {r.extra['compile_seconds']:.1f} |"
                  for r in compiled]
    if report.batch > 1:
        lines += ["", f"## Throughput, images/s (batch {report.batch})", "", "| backend | size | mode | images/s |",
                  "|---|---|---|---|"]
        lines += [f"| {r.backend} | {size_label((r.height, r.width))} | {r.mode} | {r.extra['images_per_s']:.1f} |"
                  for r in report.results]
    lines += ["", "## GFLOPs per forward", "", "| size | GFLOP |", "|---|---|"]
    lines += [f"| {size_label(s)} | {report.flops[size_key(s)] / 1e9:.1f} |" for s in report.sizes]
    if report.skipped:
        lines += ["", "## Not measured", ""] + [f"- {line}" for line in format_skipped(report).splitlines()]
    return "\n".join(lines) + "\n"


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Latency vs input side, log y: one line per backend and mode, plus the FLOP floor when known."""
    # A Figure on the Agg canvas, not pyplot: files only, never a window, no global backend switch
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(9.5, 5.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    styles = {"device": ("-", "o"), "end-to-end": ("--", "s")}
    xs = [(h * w) ** 0.5 for h, w in report.sizes]
    for i, backend in enumerate(report.backends):
        for mode in report.modes:
            points = [(x, r) for x, s in zip(xs, report.sizes) if (r := report.result(backend, s, mode))]
            if not points:
                continue
            line, marker = styles[mode]
            medians = [r.median_ms for _, r in points]
            # min .. p90 bars: asymmetric and always positive, unlike ± std on a log axis
            spread = [[r.median_ms - r.min_ms for _, r in points], [r.p90_ms - r.median_ms for _, r in points]]
            ax.errorbar([x for x, _ in points], medians, yerr=spread, color=colors(i % 10), linestyle=line,
                        marker=marker, markersize=5, capsize=3, linewidth=1.6,
                        label=f"{backend} ({MODE_TITLES[mode]})")
    if report.peak_tflops:
        ax.plot(xs, [report.floor_ms(*s) for s in report.sizes], color="black", linestyle=":", linewidth=1.8,
                label=f"FLOP floor ({report.peak_tflops:g} TFLOP/s)")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(xs, [size_label(s) for s in report.sizes])
    ax.set_xlabel("input size (px)")
    ax.set_ylabel("latency per batch (ms, log scale)\nmedian, bars min .. p90")
    synthetic = ", synthetic weights" if report.synthetic else ""
    ax.set_title(f"{report.backbone}{synthetic}, batch {report.batch}, {report.iterations} iterations\n"
                 f"{report.hardware}, {report.machine.get('date')}, torch {report.machine.get('torch')}",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", axis="y", alpha=0.2)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_report(report: BenchReport, out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
    """`<stem>.json`, `<stem>.md` and `<stem>.png` under `out_dir`, each written atomically.

    The default stem names what was measured (backbone, device type, batch), never a timestamp.
    """
    out_dir = Path(out_dir)
    stem = stem or f"{report.backbone}_{torch.device(report.device).type}_b{report.batch}"
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(format_markdown(report))
    plot_report(report, paths["png"])
    return paths
