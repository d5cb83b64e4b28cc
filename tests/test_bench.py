"""Latency benchmarks (pytest-benchmark) and the `lseg-encoder bench` command.

Two kinds of tests live here:
- `test_latency`: pytest-benchmark measurements, marked `benchmark`; the normal run skips them
  (`--benchmark-skip` in addopts). Run them with
  `pytest --benchmark-only -m benchmark --benchmark-json=bench.json`. They measure and never
  assert a wall-clock limit. On CPU they use the tiny config at 256 and 320 px; on a GPU also
  520 and 910 px and the full ViT-L/16 (synthetic weights).
- the CLI / report tests below: fast checks of what `lseg-encoder bench` writes and refuses; they
  run in the normal suite and only check structure, never timings.
"""

from __future__ import annotations

import json
import struct

import pytest
import torch

from lseg_encoder.backends import BACKENDS
from lseg_encoder.cli import main
from lseg_encoder.suites.timing import machine_info, time_runner

# --------------------------------------------------------------------------------------------------
# pytest-benchmark suite
# --------------------------------------------------------------------------------------------------

BENCH_BACKENDS = tuple(BACKENDS)  # every row of the backend table; the ones that cannot run here skip
SIDES = (256, 320, 520, 910)
CPU_SIDES = (256, 320)
CPU_RUNS = ("torch", "onnxruntime", "onnxruntime-fp16", "compiled-fp32")  # affordable on two CPU cores
BACKBONES = (
    pytest.param("tiny", id="tiny"),
    pytest.param("clip_vitl16_384", id="vitl16", marks=(pytest.mark.gpu, pytest.mark.slow)),
)
MODES = ("device", "end-to-end")


def _plan_skip(device: str, backbone: str, side: int, backend: str) -> str | None:
    """Why this cell is not measured on this machine beyond what the runner pool says (None: measure it)."""
    if device == "cuda":
        return None
    if backbone != "tiny":
        return ("ViT-L/16 benchmarks run where CUDA is available; on CPU use "
                "`lseg-encoder bench --backbone clip_vitl16_384 --device cpu --iterations 5`")
    if side not in CPU_SIDES:
        return f"CPU run: tiny config at {' and '.join(map(str, CPU_SIDES))} px only; {side} px runs with CUDA"
    if backend == "compiled-fp32" and side != CPU_SIDES[0]:
        return (f"CPU run: {backend} only at {CPU_SIDES[0]} px (about a minute of compilation per shape on "
                "2 cores); every size runs with CUDA")
    return None


class BenchPools:
    """The shared runner pool (`suites.sweep.RunnerPool`) per backbone, plus each runner's device-only
    core stats. A backend that cannot run here skips every test with the pool's one reason."""

    def __init__(self, device: str):
        self.device = device
        self.gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
        self.core_iterations, self.rounds, self.warmup = (100, 100, 10) if device == "cuda" else (5, 10, 2)
        self._pools: dict = {}
        self._core: dict = {}

    def runner(self, encoder, backend: str, size: tuple[int, int]):
        from lseg_encoder.suites.sweep import RunnerPool, Skip

        name = encoder.config.name
        if name not in self._pools:
            explicit = CPU_RUNS if self.device == "cpu" else ()
            self._pools[name] = RunnerPool(encoder, self.device, explicit=explicit)
        runner = self._pools[name].runner(backend, size)
        if isinstance(runner, Skip):
            pytest.skip(f"{backend} cannot run here: {runner.reason}")
        return runner

    def core(self, runner, x: torch.Tensor):
        """Device-only stats from the shared timing core (CUDA events on GPU), once per runner and size."""
        key = (id(runner), tuple(x.shape))
        if key not in self._core:
            import time

            t0 = time.perf_counter()
            runner.infer(x.to(runner.device), to_host=False)  # compile / lazy build outside any timing
            runner.synchronize()
            first_call_s = time.perf_counter() - t0
            stats = time_runner(runner, x, mode="device", warmup=self.warmup, iterations=self.core_iterations)
            self._core[key] = (stats, first_call_s)
        return self._core[key]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


@pytest.fixture(scope="module")
def runner_pool():
    pool = BenchPools("cuda" if torch.cuda.is_available() else "cpu")
    yield pool
    pool.close()


@pytest.mark.benchmark
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BENCH_BACKENDS)
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_latency(benchmark, request, runner_pool, backbone, side, backend, mode):
    from lseg_encoder.suites.bench import known_peak
    from lseg_encoder.suites.timing import encoder_flops

    reason = _plan_skip(runner_pool.device, backbone, side, backend)
    if reason:
        pytest.skip(reason)
    encoder = request.getfixturevalue("tiny_encoder" if backbone == "tiny" else "vitl16_encoder")
    runner = runner_pool.runner(encoder, backend, (side, side))
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    core, first_call_s = runner_pool.core(runner, x)

    flops = encoder_flops(encoder.config, side, side)
    peak, _ = known_peak({"gpu": runner_pool.gpu})
    floor_ms = flops / (peak * 1e12) * 1e3 if peak else None
    compile_seconds = getattr(runner, "compile_seconds", {}).get((1, side, side))
    benchmark.group = f"{backbone} {side}x{side} b1"
    benchmark.extra_info.update({
        "backbone": backbone, "backend": backend, "precision": runner.precision, "mode": mode,
        "device": str(runner.device), "gpu": runner_pool.gpu, "cpu": machine_info()["cpu"],
        "size": [side, side], "batch": 1,
        "device_median_ms": core.median_ms, "device_timer": core.timer, "device_iterations": core.iterations,
        "flops": flops, "peak_tflops": peak, "floor_ms": floor_ms,
        "floor_ratio": core.median_ms / floor_ms if floor_ms else None,
        "first_call_s": first_call_s, "compile_seconds": compile_seconds,
    })

    if mode == "device":
        x_in = x.to(runner.device)

        def call():
            runner.infer(x_in, to_host=False)
            runner.synchronize()  # GPU work finishes inside the timed callable
    else:
        def call():
            runner.infer(x, to_host=True)
            runner.synchronize()

    benchmark.pedantic(call, rounds=runner_pool.rounds, iterations=1, warmup_rounds=runner_pool.warmup)


# --------------------------------------------------------------------------------------------------
# `lseg-encoder bench` and the report (normal suite; structure only, never timings)
# --------------------------------------------------------------------------------------------------

REQUIRED_STATS = {"backend", "precision", "mode", "batch", "height", "width", "iterations", "warmup",
                  "median_ms", "mean_ms", "std_ms", "p90_ms", "min_ms", "timer", "extra"}
REQUIRED_EXTRA = {"flops", "floor_ms", "floor_ratio", "compile_seconds", "first_call_s", "images_per_s", "runner"}

needs_cpu_only = pytest.mark.usefixtures("without_cuda")  # the no-CUDA skip path


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_cli_writes_table_json_markdown_png(tmp_path, capsys):
    rc = main(["bench", "--backbone", "tiny", "--img_sizes", "256", "--iterations", "3", "--warmup", "1",
               "--backends", "torch,onnxruntime", "--device", "cpu", "--out", str(tmp_path), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "SYNTHETIC" in err
    assert "device-only latency" in out and "end-to-end latency" in out
    assert "torch" in out and "onnxruntime" in out and " ± " in out

    report = json.loads((tmp_path / "tiny_cpu_b1.json").read_text())
    assert report["schema"] == "lseg-encoder/bench/v1" and report["lseg_encoder_version"]
    assert report["backbone"] == "tiny" and report["synthetic"] is True and report["device"] == "cpu"
    for key in ("cpu", "cpu_count", "torch", "onnxruntime", "gpu", "date"):
        assert key in report["machine"]
    assert report["flops"]["256x256"] > 0
    results = report["results"]
    assert {(r["backend"], r["mode"]) for r in results} == {
        ("torch", "device"), ("torch", "end-to-end"), ("onnxruntime", "device"), ("onnxruntime", "end-to-end")}
    for r in results:
        assert REQUIRED_STATS <= set(r) and REQUIRED_EXTRA <= set(r["extra"])
        assert (r["height"], r["width"], r["iterations"], r["warmup"]) == (256, 256, 3, 1)
        assert r["min_ms"] <= r["median_ms"] <= r["p90_ms"] and r["std_ms"] >= 0
        assert r["extra"]["flops"] == report["flops"]["256x256"]
        assert r["extra"]["floor_ratio"] is None  # no peak is known for a CPU
    assert report["skipped"] == []

    markdown = (tmp_path / "tiny_cpu_b1.md").read_text()
    assert "| size | torch | onnxruntime |" in markdown and "| 256 |" in markdown
    assert "SYNTHETIC" in markdown
    width, height = _png_size(tmp_path / "tiny_cpu_b1.png")
    assert width > 600 and height > 400
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("size", ["250", "256x250"])
def test_cli_refuses_invalid_size_before_loading(tmp_path, capsys, monkeypatch, size):
    import lseg_encoder.weights.checkpoint

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the size check")

    monkeypatch.setattr(lseg_encoder.weights.checkpoint, "load_encoder", must_not_load)
    rc = main(["bench", "--img_sizes", "260", size, "--backends", "torch", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "not supported by clip_vitl16_384" in err and "250: try 239 or 256" in err
    assert not any(tmp_path.iterdir())


def test_cli_refuses_unknown_backend(tmp_path, capsys):
    rc = main(["bench", "--backbone", "tiny", "--img_sizes", "256", "--backends", "torch,tensort",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown backend 'tensort'" in err and "tensorrt" in err  # names the known ones
    assert "usage: lseg-encoder bench" in err  # the subcommand's usage, not the top-level one
    assert not any(tmp_path.iterdir())


@needs_cpu_only
def test_cli_lists_unavailable_backend_as_skipped(tmp_path, capsys):
    rc = main(["bench", "--backbone", "tiny", "--img_sizes", "256", "--iterations", "2", "--warmup", "0",
               "--mode", "device", "--backends", "torch,tensorrt", "--device", "cpu", "--out", str(tmp_path),
               "--name", "run", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "not measured:" in out and "tensorrt (all sizes) skipped:" in out and "CUDA" in out
    report = json.loads((tmp_path / "run.json").read_text())
    assert [r["backend"] for r in report["results"]] == ["torch"]
    assert report["modes"] == ["device"]
    (skip,) = report["skipped"]
    assert skip["backend"] == "tensorrt" and skip["status"] == "skipped" and skip["size"] is None
    assert "CUDA" in skip["reason"]
    assert "## Not measured" in (tmp_path / "run.md").read_text()


@needs_cpu_only
def test_cli_fails_when_no_backend_can_run(tmp_path, capsys):
    rc = main(["bench", "--backbone", "tiny", "--img_sizes", "256", "--iterations", "2", "--backends",
               "torch,onnxruntime", "--device", "cuda", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no backend could run" in err
    assert "torch (all sizes) skipped: CUDA is not available" in err
    assert "onnxruntime (all sizes) skipped: would run on cpu, not cuda" in err
    assert not list(tmp_path.glob("*.json"))


def test_a_failing_backend_does_not_stop_the_others(tiny_encoder, monkeypatch, tmp_path):
    import lseg_encoder.suites.sweep
    from lseg_encoder.reports.bench import write_report
    from lseg_encoder.suites.bench import BenchReport, run_benchmarks

    real = lseg_encoder.suites.sweep.make_runner

    def flaky(backend, *args, **kwargs):
        if backend == "torch-fp16":
            raise RuntimeError("simulated crash in a backend")
        return real(backend, *args, **kwargs)

    monkeypatch.setattr(lseg_encoder.suites.sweep, "make_runner", flaky)
    report = run_benchmarks(tiny_encoder, ["torch-fp16", "torch"], [(256, 256)], device="cpu", iterations=2,
                            warmup=0, modes=["device"], peak_tflops=0.5, progress=False, explicit=["torch-fp16"])
    assert [r.backend for r in report.results] == ["torch"]
    (failed,) = report.skipped
    assert failed.status == "failed" and failed.reason == "RuntimeError: simulated crash in a backend"

    # the floor comes from --peak-tflops and the FLOP count, and each result carries its ratio
    (r,) = report.results
    floor = report.flops["256x256"] / 0.5e12 * 1e3
    assert report.floor_ms(256, 256) == pytest.approx(floor)
    assert r.extra["floor_ms"] == pytest.approx(floor)
    assert r.extra["floor_ratio"] == pytest.approx(r.median_ms / floor)
    assert report.peak_source.startswith("given")

    paths = write_report(report, tmp_path)
    again = BenchReport.from_dict(json.loads(paths["json"].read_text()))
    assert again.to_dict() == report.to_dict()
    assert "FLOP floor" in paths["markdown"].read_text()


def test_known_peak_only_for_measured_cards():
    from lseg_encoder.suites.bench import known_peak

    assert known_peak({"gpu": "NVIDIA H100 80GB HBM3"})[0] == 790.0
    assert known_peak({"gpu": "NVIDIA GeForce RTX 4090"}) == (None, None)
    assert known_peak({"gpu": None}) == (None, None)


def test_lanes_are_skipped_with_the_reason_where_a_backend_has_none(tiny_encoder, tmp_path):
    from lseg_encoder.errors import LsegError
    from lseg_encoder.reports.bench import format_lanes, write_report
    from lseg_encoder.suites.bench import BenchReport, run_benchmarks

    with pytest.raises(LsegError, match="at least 1"):
        run_benchmarks(tiny_encoder, ["torch"], [(64, 64)], device="cpu", lanes=0, progress=False)
    report = run_benchmarks(tiny_encoder, ["torch"], [(64, 64)], device="cpu", iterations=2, warmup=0,
                            modes=["device"], progress=False, lanes=2)
    assert [r.mode for r in report.results] == ["device"]  # the latency row is measured as before
    (skip,) = report.skipped
    assert (skip.mode, skip.status, skip.reason) == ("lanes", "skipped", "lanes need the compiled backend on CUDA")
    assert format_lanes(report) == ""
    paths = write_report(report, tmp_path)
    again = BenchReport.from_dict(json.loads(paths["json"].read_text()))
    assert again.lanes == 2 and again.to_dict() == report.to_dict()
    assert "torch (64 lanes) skipped: lanes need the compiled backend on CUDA" in paths["markdown"].read_text()


def test_lanes_results_are_reported_beside_one_lane(tiny_encoder):
    """The rendering of a lanes row (its numbers come from `time_lanes` on CUDA; here one is built by hand
    from a measured CPU row, only to check what the table and the text say about it)."""
    import dataclasses

    from lseg_encoder.reports.bench import format_lanes, format_markdown
    from lseg_encoder.suites.bench import run_benchmarks

    report = run_benchmarks(tiny_encoder, ["torch"], [(64, 64)], device="cpu", batch=2, iterations=2, warmup=0,
                            modes=["device"], progress=False, lanes=3)
    (row,) = report.results
    lanes = dataclasses.replace(row, mode="lanes", median_ms=row.median_ms / 2,
                                extra={**row.extra, "images_per_s": 4e3 / row.median_ms,
                                       "one_lane_ms": row.median_ms, "one_lane_images_per_s": 2e3 / row.median_ms,
                                       "gain": 1.0})
    report.results.append(lanes)
    text = format_lanes(report)
    assert text.startswith("device-only throughput with 3 batches in flight") and "+100.0 %" in text
    assert f"3 lanes {row.median_ms / 2:.3f}" in text
    markdown = format_markdown(report)
    assert "| backend | size | 1 lane | 3 lanes |" in markdown and "| +100.0 % |" in markdown


def test_cli_lanes_option(tmp_path, capsys):
    rc = main(["bench", "--backbone", "tiny", "--img_sizes", "64", "--iterations", "2", "--warmup", "0",
               "--backends", "torch", "--device", "cpu", "--mode", "device", "--lanes", "2", "--out", str(tmp_path),
               "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "not measured:\n  torch (64 lanes) skipped: lanes need the compiled backend on CUDA" in out
    assert main(["bench", "--backbone", "tiny", "--lanes", "0", "--out", str(tmp_path)]) == 2
    assert "argument --lanes: must be >= 1, got 0" in capsys.readouterr().err
