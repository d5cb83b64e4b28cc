#!/usr/bin/env python
"""C++ AOTI (`lseg_cpp bench`) vs Python AOTI (`AOTIRunner`) latency, same packages, same machine.

Default (the H100 run for issue 8): the full clip_vitl16_384 encoder on SYNTHETIC weights, packaged
in fp16 for CUDA at 520 and 910, batch 1; lseg_cpp built against the torch wheel's libtorch. Needs
torch with CUDA (2.11+cu130 was the target), cmake >= 3.18 and g++; no network, no pip installs:

    python scripts/gpu_cpp_compare.py                       # from the repository root
    OUT=/some/dir python scripts/gpu_cpp_compare.py         # results under $OUT

CPU smoke run (what docs/cpp.md quotes for the 2-core CPU):

    python scripts/gpu_cpp_compare.py --backbone tiny --device cpu --precision fp32 --sizes 64x96

Both sides time the same things:
  device-only  input already on the device, output left there; CUDA events on GPU (C++: c10 events
               on the current stream; Python: torch.cuda.Event), wall clock on CPU;
  end-to-end   host float32 tensor in -> host float32 out, copies included, wall clock.
Python goes through `Runner.infer` (input validation included), as users call it. Writes
`cpp_bench.json`, `python_bench.json`, `compare.json` and `compare.md` to $OUT (default
./gpu_cpp_compare_out) and prints the table. Exit status 0 even when lseg_cpp cannot be built, in
which case the reason is printed and only the Python numbers are reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # PYTHONPATH=src, without installing the package


def log(text: str) -> None:
    print(f"[gpu_cpp_compare] {text}", file=sys.stderr, flush=True)


def stats(ms: list[float]) -> dict:
    """The project's one statistics rule (`suites.timing.summarize`), so C++ and Python agree on p90."""
    from lseg_encoder.suites.timing import summarize

    return summarize(ms)


def cuda_toolkit_hints() -> list[str]:
    """CMake hints for the CUDA toolkit that a CUDA libtorch's CMake config asks for: nvcc on PATH, or
    the nvidia-* wheels next to torch (headers and libcudart ship there)."""
    if shutil.which("nvcc") or os.environ.get("CUDAToolkit_ROOT"):
        return []
    import torch

    site = Path(torch.__file__).resolve().parents[1] / "nvidia"
    for candidate in (site / "cu13", site / "cuda_runtime", Path("/usr/local/cuda")):
        if (candidate / "include" / "cuda_runtime_api.h").exists():
            return [f"-DCUDAToolkit_ROOT={candidate}"]
    return []


def build_lseg_cpp(build_dir: Path) -> tuple[Path | None, str]:
    import torch

    cmake = shutil.which("cmake")
    if not cmake:
        return None, "cmake not found on PATH"
    cmd = [cmake, "-S", str(ROOT / "cpp"), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", *cuda_toolkit_hints()]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    t0 = time.perf_counter()
    for step in (cmd, [cmake, "--build", str(build_dir), "-j", str(min(16, os.cpu_count() or 2))]):
        proc = subprocess.run(step, capture_output=True, text=True)
        with (build_dir.parent / "cpp_build.log").open("a") as f:
            f.write(" ".join(step) + "\n" + proc.stdout + proc.stderr)
        if proc.returncode:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            return None, f"{' '.join(step[:2])} failed (exit {proc.returncode}):\n" + "\n".join(tail)
    log(f"built lseg_cpp in {time.perf_counter() - t0:.1f} s")
    return build_dir / "lseg_cpp", ""


def python_bench(package: Path, iterations: int, warmup: int) -> dict:
    import torch

    from lseg_encoder.runners.aoti_runner import AOTIRunner

    runner = AOTIRunner(package).activate()
    shape = runner.input_spec.shape
    host = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    dev = host.to(runner.device)
    cuda = runner.device.type == "cuda"
    for _ in range(warmup):
        runner.infer(host)
    device_ms, e2e_ms = [], []
    if cuda:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    runner.synchronize()
    for _ in range(iterations):
        if cuda:
            start.record()
            runner.infer(dev, to_host=False)
            stop.record()
            stop.synchronize()
            device_ms.append(start.elapsed_time(stop))
        else:
            t0 = time.perf_counter()
            runner.infer(dev, to_host=False)
            device_ms.append((time.perf_counter() - t0) * 1e3)
    for _ in range(iterations):
        t0 = time.perf_counter()
        runner.infer(host)  # to_host=True: .cpu() waits for the device
        e2e_ms.append((time.perf_counter() - t0) * 1e3)
    spec = runner.spec
    runner.deactivate()
    return {"backend": "python-aoti", "precision": spec.precision, "device": str(runner.device),
            "input_shape": list(shape), "device_only_ms": stats(device_ms), "end_to_end_ms": stats(e2e_ms)}


def _cell(s: dict) -> str:
    return f"{s['median_ms']:.3f}, {s['mean_ms']:.3f} ± {s['std_ms']:.3f}"


def machine_info() -> dict:
    import torch

    info = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                    capability=".".join(map(str, torch.cuda.get_device_capability())))
        smi = shutil.which("nvidia-smi")
        if smi:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True).stdout.strip()
            info["driver"] = out.splitlines()[0] if out else ""
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="clip_vitl16_384")
    ap.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    ap.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--sizes", nargs="+", default=["520", "910"], help="N or HxW each")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (0: libtorch default)")
    args = ap.parse_args()

    out = Path(os.environ.get("OUT") or "gpu_cpp_compare_out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LSEG_CACHE_DIR", str(out / "cache"))  # synthetic checkpoint + packages

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from lseg_encoder import default_synthetic_checkpoint, load_encoder, parse_size
    from lseg_encoder.loaders import aoti_package

    if args.device == "cuda" and not torch.cuda.is_available():
        log("torch.cuda.is_available() is False: run this on the GPU machine, or pass --device cpu")
        return 2
    info = machine_info()
    log(f"machine: {json.dumps(info)}")
    log(f"weights: SYNTHETIC {args.backbone} (reference fill rule), cached in {os.environ['LSEG_CACHE_DIR']}")
    encoder = load_encoder(default_synthetic_checkpoint(args.backbone), backbone=args.backbone)
    packages, package_s = [], {}
    for text in args.sizes:
        size = parse_size(text)  # the project's one size parser
        t0 = time.perf_counter()
        packages.append(aoti_package(encoder, size=size, precision=args.precision, device=args.device,
                                            progress=log))
        package_s[f"{size[0]}x{size[1]}"] = round(time.perf_counter() - t0, 1)
    del encoder
    if args.device == "cuda":
        torch.cuda.empty_cache()

    exe, why = build_lseg_cpp(out / "cpp-build")
    cpp_rows = []
    if exe is None:
        log(f"lseg_cpp NOT built, C++ numbers missing: {why}")
    else:
        cmd = [str(exe), "bench", "--iterations", str(args.iterations), "--warmup", str(args.warmup),
               "--json", str(out / "cpp_bench.json")]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        for p in packages:
            cmd += ["--aoti", str(p)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode:
            log(f"lseg_cpp bench failed: {proc.stderr.strip()}")
        else:
            cpp_rows = json.loads((out / "cpp_bench.json").read_text())["results"]

    py_rows = []
    for p in packages:
        log(f"python AOTIRunner: {p.name}")
        py_rows.append(python_bench(p, args.iterations, args.warmup))
    (out / "python_bench.json").write_text(json.dumps({"machine": info, "results": py_rows}, indent=2))

    lines = [f"C++ AOTI vs Python AOTI, {args.backbone} (SYNTHETIC weights) {args.precision} {args.device}, "
             f"batch 1, {args.iterations} iterations after {args.warmup} warm-up",
             f"machine: {info.get('gpu', info['cpu'])}, {info['cpu_count']} CPU cores, torch {info['torch']}"
             + (f", CUDA {info['cuda']}, driver {info.get('driver', '?')}" if "gpu" in info else "")
             + f", {info['date']}", "",
             "| size | mode | C++ AOTI ms (median, mean ± std) | Python AOTI ms (median, mean ± std) "
             "| C++ / Python (medians) |",
             "|---|---|---|---|---|"]
    compare = []
    for py in py_rows:
        shape = py["input_shape"]
        cpp = next((r for r in cpp_rows if r["input_shape"] == shape), None)
        for mode, label in (("device_only_ms", "device-only"), ("end_to_end_ms", "end-to-end")):
            p = py[mode]
            c = cpp[mode] if cpp else None
            ratio = f"{c['median_ms'] / p['median_ms']:.3f}" if c else "n/a"
            lines.append(f"| {shape[2]}x{shape[3]} | {label} | {_cell(c) if c else 'not built'} | {_cell(p)} "
                         f"| {ratio} |")
            compare.append({"size": shape[2:], "mode": label, "cpp": c, "python": p})
    lines += ["", f"packaging (export + AOTInductor compile, or cache hit) s: {package_s}"]
    if exe is None:
        lines.append(f"lseg_cpp not built: {why.splitlines()[0]}")
    text = "\n".join(lines)
    print(text)
    (out / "compare.md").write_text(text + "\n")
    (out / "compare.json").write_text(json.dumps({"machine": info, "args": vars(args), "package_s": package_s,
                                                  "rows": compare}, indent=2))
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
