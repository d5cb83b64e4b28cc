#!/usr/bin/env python
"""C++ (`lseg_cpp`, AOTInductor) vs Python compiled latency and fidelity, one GPU call (issue 13).

The lead's H100 run, at most ~8 minutes, from the repository root:

    OUT=/tmp/cpp_compare PYTHONPATH=src python scripts/gpu_cpp_compare.py

Default: the full clip_vitl16_384 encoder on SYNTHETIC weights, fp16 AOTI packages for CUDA at
260, 520 and 910, batch 1. Steps, in this order (each in its own try/except; an error is recorded
in compare.json and the run goes on; a step that would start after --budget-s is skipped and
recorded as such):

  package   AOTI packages, one writing fp32 features and one writing fp16 (`--output-dtype fp16`)
            per size (artefact cache in --cache, default /tmp/lsegcache: a second call on the same
            warm machine reuses them, and the synthetic checkpoint)
  build     lseg_cpp into --cache/cpp-build-<hash of cpp/ + torch>, skipped when already built
  cpp       lseg_cpp bench per size and configuration:
              graph-fp16    CUDA graph, fp16 host output, pinned buffers, + pipelined stream mode, on
                            the fp16-output package (no cast after the graph)
              graph-fp32    CUDA graph, fp32 output, on the fp32-output package (device-only beside
                            Python's fp32 device-only)
              eager-fp16    --no-cuda-graph, fp16, pinned, fp16-output package
              old-fp32      --no-cuda-graph, fp32 output, pageable buffers (what lseg_cpp did before)
  fidelity  lseg_cpp extract (fp32 output) with and without the graph on one fixed input per size;
            compared with each other and, below, with Python AOTI and Python compiled
            (lseg_encoder.fidelity, fp16 tolerance row)
  python    CompiledRunner (torch.compile reduce-overhead = CUDA graphs, fp16): device-only with
            fp32 and with fp16 features (suites.timing.time_runner, CUDA events), single blocking call
            with fp16 output into a pinned host buffer from a pinned input, and runners.pipeline stream (ms/frame)
  pyaoti    Python AOTIRunner in a SUBPROCESS per size (it has died with exit 139 on CUDA packages
            on torch 2.11): return code and stderr tail recorded; timings and features when it lives

Results are written after every step: $OUT/compare.json, $OUT/compare.md, $OUT/cpp_*.json,
$OUT/logs/*.log. Progress lines carry the elapsed time. CPU smoke run (tiny backbone):

    python scripts/gpu_cpp_compare.py --backbone tiny --device cpu --precision fp32 --sizes 64x96 \\
        --steps package build cpp fidelity pyaoti
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # PYTHONPATH=src, without installing the package
T0 = time.perf_counter()
STEPS = ("package", "build", "cpp", "fidelity", "python", "pyaoti")
CPP_CONFIGS = {  # name: (the package's output dtype, lseg_cpp bench flags)
    "graph-fp16": ("float16", ["--output-dtype", "fp16"]),
    "graph-fp32": ("float32", ["--output-dtype", "fp32", "--stream-frames", "0"]),
    "eager-fp16": ("float16", ["--output-dtype", "fp16", "--no-cuda-graph", "--stream-frames", "0"]),
    "old-fp32": ("float32", ["--output-dtype", "fp32", "--no-cuda-graph", "--host-buffers", "pageable",
                             "--stream-frames", "0"]),
}


def log(text: str) -> None:
    print(f"[gpu_cpp_compare +{time.perf_counter() - T0:6.1f}s] {text}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Report:
    """compare.json / compare.md rewritten after every step, so a run cut at its limit still reports."""

    def __init__(self, out: Path, args: argparse.Namespace):
        self.out = out
        self.data: dict = {"args": vars(args), "machine": {}, "steps": {}, "package_s": {}, "cpp": {},
                           "python": {}, "pyaoti": {}, "fidelity": {}}

    def step(self, name: str, status: str, detail: str = "") -> None:
        self.data["steps"][name] = {"status": status, "detail": detail,
                                    "at_s": round(time.perf_counter() - T0, 1)}
        self.write()

    def write(self) -> None:
        (self.out / "compare.json").write_text(json.dumps(self.data, indent=2, default=str))
        (self.out / "compare.md").write_text(markdown(self.data) + "\n")


def _med(stats: dict | None) -> str:
    if not stats:
        return "-"
    key = "median_ms" if "median_ms" in stats else "median"
    return f"{stats[key]:.3f}"


def markdown(d: dict) -> str:
    m = d["machine"]
    lines = [f"# lseg_cpp vs Python, {d['args']['backbone']} (SYNTHETIC weights) {d['args']['precision']} "
             f"{d['args']['device']}, batch 1",
             f"{m.get('gpu') or m.get('cpu', '?')}, torch {m.get('torch', '?')}, CUDA {m.get('cuda') or '-'}, "
             f"driver {m.get('driver') or '-'}, {m.get('date', '?')}; {d['args']['iterations']} iterations after "
             f"{d['args']['warmup']} warm-up; medians in ms (stream: ms per frame)", "",
             "| size | C++ graph dev fp16 | Py compiled dev fp16 | C++ graph dev fp32 | Py compiled dev fp32 "
             "| C++ eager dev fp16 | C++ graph e2e fp16 pinned "
             "| C++ eager e2e fp16 pinned | C++ old e2e fp32 pageable | Py e2e fp16 pinned | C++ stream | Py stream "
             "| Py AOTI dev / e2e |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in d["args"]["sizes"]:
        cpp = d["cpp"].get(size, {})
        py = d["python"].get(size, {})
        pa = d["pyaoti"].get(size, {})
        g, e, o = cpp.get("graph-fp16", {}), cpp.get("eager-fp16", {}), cpp.get("old-fp32", {})
        g32 = cpp.get("graph-fp32", {})
        pa_cell = (f"{_med(pa.get('device_only_ms'))} / {_med(pa.get('end_to_end_ms'))}" if pa.get("rc") == 0
                   else (f"rc {pa['rc']}" if "rc" in pa else "-"))
        py_stream = f"{py['stream_ms_per_frame']:.3f}" if "stream_ms_per_frame" in py else "-"
        graph_note = "" if not g or g.get("cuda_graph") else " (no graph)"  # CPU packages, or capture off
        lines.append(f"| {size} | {_med(g.get('device_only_ms'))}{graph_note} | {_med(py.get('device_only_fp16_ms'))} "
                     f"| {_med(g32.get('device_only_ms'))} | {_med(py.get('device_only_ms'))} "
                     f"| {_med(e.get('device_only_ms'))} | {_med(g.get('end_to_end_ms'))} "
                     f"| {_med(e.get('end_to_end_ms'))} | {_med(o.get('end_to_end_ms'))} "
                     f"| {_med(py.get('end_to_end_fp16_pinned_ms'))} | {_med(g.get('stream_ms_per_frame'))} "
                     f"| {py_stream} | {pa_cell} |")
    lines += ["", "Fidelity (fp16 tolerance row; `equal` = bitwise):", ""]
    for size, rows in d["fidelity"].items():
        for name, row in rows.items():
            lines.append(f"- {size} {name}: {row}")
    lines += ["", f"packaging s: {d['package_s']}", "", "Steps:"]
    for name, s in d["steps"].items():
        lines.append(f"- {name}: {s['status']} at {s['at_s']} s" + (f": {s['detail']}" if s["detail"] else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ build
def cuda_toolkit_hints() -> list[str]:
    """CMake hints for the CUDA toolkit a CUDA libtorch's CMake config asks for: nvcc on PATH, or
    the nvidia-* wheels next to torch (headers and libcudart ship there)."""
    if shutil.which("nvcc") or os.environ.get("CUDAToolkit_ROOT"):
        return []
    import torch

    site = Path(torch.__file__).resolve().parents[1] / "nvidia"
    for candidate in (site / "cu13", site / "cuda_runtime", Path("/usr/local/cuda")):
        if (candidate / "include" / "cuda_runtime_api.h").exists():
            return [f"-DCUDAToolkit_ROOT={candidate}"]
    return []


def build_lseg_cpp(cache: Path, logs: Path) -> Path:
    import torch

    h = hashlib.sha256(torch.__version__.encode())
    for path in sorted(p for p in (ROOT / "cpp").rglob("*") if p.is_file() and "build" not in p.parts):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    build_dir = cache / f"cpp-build-{h.hexdigest()[:12]}"
    exe = build_dir / "lseg_cpp"
    if (build_dir / "BUILD_OK").exists() and exe.exists():
        log(f"lseg_cpp already built: {exe}")
        return exe
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("cmake not found on PATH")
    cmd = [cmake, "-S", str(ROOT / "cpp"), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", *cuda_toolkit_hints()]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    for step in (cmd, [cmake, "--build", str(build_dir), "-j", str(min(16, os.cpu_count() or 2))]):
        proc = subprocess.run(step, capture_output=True, text=True)
        with (logs / "cpp_build.log").open("a") as f:
            f.write(" ".join(step) + "\n" + proc.stdout + proc.stderr)
        if proc.returncode:
            why = tail(proc.stdout + proc.stderr)
            raise RuntimeError(f"{' '.join(step[:2])} failed (exit {proc.returncode}):\n{why}")
    (build_dir / "BUILD_OK").write_text("ok\n")
    log(f"built lseg_cpp; features: {(build_dir / 'lseg_cpp_features.txt').read_text().split()}")
    return exe


def run_logged(cmd: list[str], logfile: Path, timeout: float) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        logfile.write_text(f"$ {' '.join(cmd)}\nTIMEOUT after {timeout} s\n{exc.stdout or ''}{exc.stderr or ''}")
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd[:3])}") from None
    logfile.write_text(f"$ {' '.join(cmd)}\nrc {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------------------- python
def python_compiled(encoder, size: tuple[int, int], x, args) -> tuple[dict, object]:
    """CompiledRunner timings (device-only, single fp16 pinned call, pipelined stream) and its fp32 features
    of `x`, the runner torn down afterwards."""
    import torch

    from lseg_encoder.backends import make_runner
    from lseg_encoder.runners.base import host_buffer
    from lseg_encoder.runners.pipeline import time_stream
    from lseg_encoder.suites.timing import summarize, time_runner

    runner = make_runner("compiled", encoder, device=args.device, size=size).activate()
    try:
        t0 = time.perf_counter()
        feats = runner.infer(x).float()
        row = {"compile_and_first_call_s": round(time.perf_counter() - t0, 1)}
        dev = time_runner(runner, x, mode="device", warmup=args.warmup, iterations=args.iterations)
        row["device_only_ms"] = dev.to_dict()
        dev16 = time_runner(runner, x, mode="device", warmup=args.warmup, iterations=args.iterations,
                            out_dtype=torch.float16)
        row["device_only_fp16_ms"] = dev16.to_dict()
        host_in = host_buffer(x.shape).copy_(x)
        host_out = host_buffer(feats.shape, torch.float16)
        times = []
        for i in range(args.warmup + args.iterations):
            t = time.perf_counter()
            runner.infer(host_in, out_dtype=torch.float16, out=host_out)  # one blocking call
            if i >= args.warmup:
                times.append((time.perf_counter() - t) * 1e3)
        row["end_to_end_fp16_pinned_ms"] = summarize(times)
        row["stream_ms_per_frame"] = time_stream(runner, host_in, frames=args.stream_frames, warmup=5)
        return row, feats
    finally:
        runner.deactivate()
        del runner
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def pyaoti_child(package: str, x_path: str, feats_path: str, json_path: str, iterations: int, warmup: int) -> int:
    """Run in a subprocess: Python AOTIRunner timings and features (the parent survives a segfault)."""
    import numpy as np
    import torch

    from lseg_encoder.runners.aoti_runner import AOTIRunner
    from lseg_encoder.suites.timing import time_runner

    x = torch.from_numpy(np.load(x_path))
    with AOTIRunner(package) as runner:
        print("activated", flush=True)
        np.save(feats_path, runner.infer(x).float().numpy())
        print("features written", flush=True)
        res = {mode_key: time_runner(runner, x, mode=mode, warmup=warmup, iterations=iterations).to_dict()
               for mode_key, mode in (("device_only_ms", "device"), ("end_to_end_ms", "end-to-end"))}
    Path(json_path).write_text(json.dumps(res))
    return 0


def fidelity_rows(feats: dict) -> dict:
    """Each named feature map against C++ graph (and graph vs eager), fp16 tolerance row."""
    import torch

    from lseg_encoder.fidelity.metrics import check, feature_metrics

    rows = {}
    ref_name = "cpp-graph" if "cpp-graph" in feats else next(iter(feats), None)
    if ref_name is None:
        return rows
    ref = torch.as_tensor(feats[ref_name]).float()
    for name, f in feats.items():
        if name == ref_name:
            continue
        got = torch.as_tensor(f).float()
        m = feature_metrics(got, ref)
        rows[f"{name} vs {ref_name}"] = {"pass_fp16_row": bool(check(m, "fp16")), "equal": bool(torch.equal(got, ref)),
                                         "max_abs": float((got - ref).abs().max()), "metrics": m.to_dict()}
    return rows


# ----------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="clip_vitl16_384")
    ap.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    ap.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--sizes", nargs="+", default=["260", "520", "910"], help="N or HxW each")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--stream-frames", type=int, default=50)
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    ap.add_argument("--cpp-configs", nargs="+", default=list(CPP_CONFIGS), choices=list(CPP_CONFIGS),
                    help="lseg_cpp configurations to time (fewer: more of the budget for the sizes)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="no step starts after this many seconds")
    ap.add_argument("--cache", default="/tmp/lsegcache", help="artefact cache reused across calls")
    ap.add_argument("--pyaoti-child", nargs=4, metavar=("PKG", "X", "FEATS", "JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pyaoti_child:
        return pyaoti_child(*args.pyaoti_child, args.iterations, args.warmup)

    out = Path(os.environ.get("OUT") or "gpu_cpp_compare_out").resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LSEG_CACHE_DIR", str(cache))
    report = Report(out, args)

    import numpy as np
    import torch

    from lseg_encoder import default_synthetic_checkpoint, load_encoder, parse_size
    from lseg_encoder.loaders import aoti_package
    from lseg_encoder.suites.timing import machine_info

    if args.device == "cuda" and not torch.cuda.is_available():
        log("torch.cuda.is_available() is False: run this on the GPU machine, or pass --device cpu")
        return 2
    report.data["machine"] = machine_info()
    report.write()
    log(f"machine: {json.dumps(report.data['machine'])}; cache {cache}; results {out}")

    def step(name: str, fn, *, key: str | None = None, always: bool = False):
        label = f"{name}:{key}" if key else name
        if name not in args.steps:
            return None
        if not always and time.perf_counter() - T0 > args.budget_s:
            report.step(label, "skipped", f"budget of {args.budget_s:.0f} s spent")
            log(f"{label}: skipped (budget)")
            return None
        log(f"{label}: start")
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the run goes on
            (logs / f"{label.replace(':', '_')}.traceback.log").write_text(traceback.format_exc())
            report.step(label, "error", f"{type(exc).__name__}: {tail(str(exc), 8)}")
            log(f"{label}: ERROR {type(exc).__name__}: {tail(str(exc), 8)}")
            return None
        report.step(label, "ok")
        log(f"{label}: ok")
        return result

    encoder = load_encoder(default_synthetic_checkpoint(args.backbone), backbone=args.backbone)
    sizes = {text: parse_size(text) for text in args.sizes}
    inputs, packages, feats = {}, {}, {text: {} for text in sizes}
    for text, size in sizes.items():
        x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        inputs[text] = out / f"x_{text}.npy"
        np.save(inputs[text], x.numpy())

        for out_dtype in ("float32", "float16"):
            def package(size=size, text=text, out_dtype=out_dtype):
                t0 = time.perf_counter()
                p = aoti_package(encoder, size=size, precision=args.precision, device=args.device, progress=log,
                                 output_dtype=out_dtype)
                report.data["package_s"][f"{text}:{out_dtype}"] = round(time.perf_counter() - t0, 1)
                return p

            packages.setdefault(text, {})[out_dtype] = step("package", package, key=f"{text}:{out_dtype}")
    if args.device == "cuda":
        torch.cuda.empty_cache()

    exe = step("build", lambda: build_lseg_cpp(cache, logs))
    timeout = max(60.0, args.budget_s / 4)
    for text, pkgs in packages.items():
        if exe is None:
            continue
        for name, (out_dtype, flags) in CPP_CONFIGS.items():
            if name not in args.cpp_configs:
                continue
            pkg = pkgs.get(out_dtype)
            if pkg is None:
                continue

            def bench(name=name, flags=flags, pkg=pkg, text=text):
                js = out / f"cpp_{name}_{text}.json"
                proc = run_logged([str(exe), "bench", "--aoti", str(pkg), "--iterations", str(args.iterations),
                                   "--warmup", str(args.warmup), "--stream-frames", str(args.stream_frames),
                                   *flags, "--json", str(js)], logs / f"cpp_{name}_{text}.log", timeout)
                if proc.returncode:
                    raise RuntimeError(f"lseg_cpp bench exit {proc.returncode}: {tail(proc.stderr, 5)}")
                print(proc.stdout, end="", flush=True)
                (row,) = json.loads(js.read_text())["results"]
                report.data["cpp"].setdefault(text, {})[name] = row
                report.write()

            step("cpp", bench, key=f"{text}:{name}")
        for name, out_dtype, flags in (("cpp-graph", "float32", []), ("cpp-eager", "float32", ["--no-cuda-graph"]),
                                       ("cpp-graph-out16", "float16", ["--output-dtype", "fp16"])):
            pkg = pkgs.get(out_dtype)
            if pkg is None:
                continue

            def extract(name=name, flags=flags, pkg=pkg, text=text):
                f = out / f"feats_{name}_{text}.npy"
                proc = run_logged([str(exe), "extract", "--aoti", str(pkg), "--input", str(inputs[text]),
                                   "--output", str(f), *flags], logs / f"extract_{name}_{text}.log", timeout)
                if proc.returncode:
                    raise RuntimeError(f"lseg_cpp extract exit {proc.returncode}: {tail(proc.stderr, 5)}")
                feats[text][name] = np.load(f)

            step("fidelity", extract, key=f"{text}:{name}")

    for text, size in sizes.items():
        def compiled(text=text, size=size):
            x = torch.from_numpy(np.load(inputs[text]))
            row, f = python_compiled(encoder, size, x, args)
            report.data["python"][text] = row
            feats[text]["py-compiled"] = f.numpy()

        step("python", compiled, key=text)

    for text, pkgs in packages.items():
        pkg = pkgs.get("float32")
        if pkg is None:
            continue

        def pyaoti(text=text, pkg=pkg):
            f, js = out / f"feats_py-aoti_{text}.npy", out / f"pyaoti_{text}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--pyaoti-child", str(pkg), str(inputs[text]),
                   str(f), str(js), "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
            try:
                proc = run_logged(cmd, logs / f"pyaoti_{text}.log", timeout)
                row = {"rc": proc.returncode, "stderr_tail": tail(proc.stderr, 10), "stdout_tail": tail(proc.stdout, 5)}
            except RuntimeError as exc:
                row = {"rc": "timeout", "stderr_tail": str(exc)}
            if js.exists():
                row.update(json.loads(js.read_text()))
            if f.exists():
                feats[text]["py-aoti"] = np.load(f)
            report.data["pyaoti"][text] = row
            if row["rc"] != 0:
                raise RuntimeError(f"Python AOTIRunner subprocess rc {row['rc']}: {row['stderr_tail'][-400:]}")

        step("pyaoti", pyaoti, key=text)

    for text in sizes:
        if len(feats[text]) >= 2:
            def fidelity(text=text):
                report.data["fidelity"][text] = fidelity_rows(feats[text])

            step("fidelity", fidelity, key=f"{text}:compare", always=True)  # cheap: report what was gathered
    report.write()
    print(markdown(report.data))
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
