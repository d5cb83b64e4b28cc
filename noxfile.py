"""nox sessions: tests (default CPU suite), fidelity, benchmark, gpu, lint, cpp.

Every session runs in its own venv with the pinned CPU torch wheel installed first (an unpinned
torch would pull a multi-GB CUDA build); the `gpu` session instead reuses the machine's own Python
(`python=False`), where a CUDA torch is already installed.
"""

import nox

nox.options.sessions = ["lint", "tests"]
TORCH = "torch==2.13.0"


def _install(session):
    session.install(TORCH)
    session.install("-e", ".[test]")


@nox.session
def tests(session):
    """The CI suite: everything but benchmarks (golden, export, engines, fidelity on CPU, C++)."""
    _install(session)
    session.run("pytest", "-q", "-rs", *session.posargs)


@nox.session
def fidelity(session):
    """Only the fidelity matrix (`pytest -m fidelity`)."""
    _install(session)
    session.run("pytest", "-q", "-rs", "-m", "fidelity", *session.posargs)


@nox.session
def benchmark(session):
    """pytest-benchmark latency suite (tiny config on CPU; writes .benchmarks/latest.json)."""
    _install(session)
    session.run("pytest", "--benchmark-only", "-m", "benchmark", "--benchmark-json=.benchmarks/latest.json",
                *session.posargs)


@nox.session(python=False)
def gpu(session):
    """On a CUDA machine with torch installed: GPU fidelity (full ViT-L/16, six seed sizes), the lanes'
    exactness, and the benchmark table for torch fp32/fp16/compiled (with 3 lanes' throughput). Run with
    PYTHONPATH=src, no installs."""
    session.run("python", "-m", "pytest", "-q", "-rs", "-m", "fidelity", "--fidelity-device", "cuda",
                "--fidelity-backbone", "clip_vitl16_384", "--fidelity-report", "reports/gpu/fidelity",
                "tests/test_fidelity.py", *session.posargs)
    # the lanes (batches in flight on several CUDA streams) equal run_on_device to the bit
    session.run("python", "-m", "pytest", "-q", "-rs", "tests/test_lanes.py")
    session.run("python", "-m", "lseg_encoder.cli", "bench", "--device", "cuda", "--backends",
                "torch,torch-fp16,compiled", "--sizes", "260", "390", "520", "650", "780", "910",
                "--iterations", "200", "--lanes", "3", "--out", "reports/gpu/bench")
    # latency ratios (tests/test_latency_ratios.py), gated against this GPU model's committed baseline
    ratios = ["python", "-m", "pytest", "-rs", "--benchmark-only", "tests/test_latency_ratios.py",
              "--benchmark-json=reports/gpu/latency_ratios.json"]
    gpu_name, storage = gpu_baseline_folder()
    if storage is not None:
        ratios += [f"--benchmark-storage=file://{storage}", "--benchmark-compare",
                   "--benchmark-compare-fail=median:15%"]
    else:
        session.log(f"regression gate SKIPPED: no baseline for GPU {gpu_name!r} under tests/benchmarks/ "
                    "(record one with --benchmark-save and commit it as tests/benchmarks/<GPU>/0001_*.json)")
    session.run(*ratios)


def gpu_baseline_folder():
    """(GPU model, tests/benchmarks/<model> if it holds a saved pytest-benchmark run, else None)."""
    import re
    import subprocess
    from pathlib import Path

    query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    name = (subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines() or ["?"])[0]
    folder = Path("tests/benchmarks") / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    return name, folder if list(folder.glob("[0-9][0-9][0-9][0-9]_*.json")) else None


@nox.session
def lint(session):
    """ruff, and the TensorRT API conformance check: mypy over engine/ and the TensorRT runner against
    tensorrt-stubs (the TensorRT 10.13 API; --no-deps: its `tensorrt` dependency cannot install here)."""
    session.install("ruff", "mypy", "filelock")
    session.install("--no-deps", "tensorrt-stubs")
    session.run("ruff", "check", "src", "tests", "conftest.py", "noxfile.py", "scripts")
    session.run("python", "scripts/trt_typecheck.py")


@nox.session
def cpp(session):
    """Configure and build lseg_cpp (AOTInductor backend; TensorRT where CMake finds it) and run
    the C++ and AOTI tests. Needs cmake >= 3.18 and a C++17 compiler."""
    _install(session)
    session.run("pytest", "-q", "-rs", "tests/test_cpp.py", "tests/test_aoti.py",
                *session.posargs)
