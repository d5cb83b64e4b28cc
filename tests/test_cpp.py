"""The C++ runner (`cpp/`, executable `lseg_cpp`): build, feature parity with Python, bench, errors.

`lseg_cpp` is configured and built once per (cpp sources, torch version, cmake, compiler) into
`.artifact-cache/cpp-build/<key>` (~25 s on two cores); the tiny fp32 AOTI package comes from the
same artefact cache as `test_aoti.py`. A missing cmake or C++ compiler is the only reason to skip;
a build that fails is a test failure with the log tail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lseg_encoder.fidelity.metrics import check, feature_metrics
from lseg_encoder.loaders import aoti_package
from lseg_encoder.runners.aoti_runner import AOTIRunner

pytestmark = pytest.mark.cpp

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"
SIZE = (64, 96)


def build_tools() -> tuple[str | None, str | None, str]:
    """(cmake, c++ compiler, reason when one is missing)."""
    cmake = shutil.which("cmake")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cmake:
        return None, cxx, "cmake not found on PATH; install cmake >= 3.18 to build cpp/"
    if not cxx:
        return cmake, None, "no C++ compiler (c++/g++/clang++) on PATH; install g++ to build cpp/"
    return cmake, cxx, ""


def _optional_deps_seen() -> list[str]:
    """Where CMake would find OpenCV / TensorRT, so that installing one invalidates the cached build."""
    import glob

    patterns = [
        "/usr/lib/*/cmake/opencv4/OpenCVConfig.cmake", "/usr/local/lib/cmake/opencv4/OpenCVConfig.cmake",
        "/usr/include/opencv4/opencv2/imgcodecs.hpp", "/usr/local/include/opencv4/opencv2/imgcodecs.hpp",
        "/usr/include/NvInfer.h", "/usr/include/*/NvInfer.h", "/usr/local/*/include/NvInfer.h",
    ]
    root = os.environ.get("TensorRT_ROOT")
    if root:
        patterns.append(f"{root}/include/NvInfer.h")
    return sorted(p for pattern in patterns for p in glob.glob(pattern))


def _tool_version(tool: str) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def cmake_configure(build_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmake, cxx, _ = build_tools()
    cmd = [cmake, "-S", str(CPP), "-B", str(build_dir), f"-DCMAKE_CXX_COMPILER={cxx}",
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", *extra]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    return subprocess.run(cmd, capture_output=True, text=True)


def _fail(step: str, proc: subprocess.CompletedProcess) -> None:
    log = (proc.stdout + proc.stderr)[-4000:]
    pytest.fail(f"{step} failed (exit {proc.returncode}):\n{log}", pytrace=False)


@pytest.fixture(scope="session")
def lseg_cpp() -> Path:
    from filelock import FileLock

    from lseg_encoder.store.cache import cache_dir

    cmake, cxx, reason = build_tools()
    if reason:
        pytest.skip(reason)
    h = hashlib.sha256()
    for path in sorted(p for p in CPP.rglob("*") if p.is_file() and "build" not in p.relative_to(CPP).parts):
        h.update(str(path.relative_to(CPP)).encode() + b"\0" + path.read_bytes() + b"\0")
    for part in (torch.__version__, _tool_version(cmake), _tool_version(cxx), cxx, *_optional_deps_seen()):
        h.update(part.encode() + b"\0")
    build_dir = cache_dir("cpp-build") / h.hexdigest()[:16]
    exe, done = build_dir / "lseg_cpp", build_dir / "BUILD_OK"
    with FileLock(str(build_dir) + ".lock"):
        if not done.exists():
            shutil.rmtree(build_dir, ignore_errors=True)  # a half-finished earlier build
            proc = cmake_configure(build_dir)
            if proc.returncode:
                _fail("cmake configure", proc)
            proc = subprocess.run([cmake, "--build", str(build_dir), "-j", str(min(2, os.cpu_count() or 1))],
                                  capture_output=True, text=True)
            if proc.returncode:
                _fail("cmake --build", proc)
            done.write_text("ok\n")
    return exe


@pytest.fixture(scope="session")
def features(lseg_cpp) -> dict[str, str]:
    text = (lseg_cpp.parent / "lseg_cpp_features.txt").read_text()
    return dict(line.split("=", 1) for line in text.split())


@pytest.fixture(scope="session")
def tiny_package(tiny_encoder) -> Path:
    return aoti_package(tiny_encoder, size=SIZE)


def run_cpp(exe: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_info_lists_backends(lseg_cpp, features):
    proc = run_cpp(lseg_cpp, "info")
    assert proc.returncode == 0, proc.stderr
    assert f"libtorch {torch.__version__.split('+')[0]}" in proc.stdout
    want = "backends: aoti tensorrt" if features["tensorrt"] == "ON" else "backends: aoti\n"
    assert want in proc.stdout
    # The build records whether the CUDA code (graphs, pinned buffers) is in, and info agrees with it.
    assert features["cuda"] == ("ON" if torch.cuda.is_available() or torch.version.cuda else "OFF")
    assert ("cuda: compiled" in proc.stdout) == (features["cuda"] == "ON"), proc.stdout


def test_extract_equals_python_aoti_and_eager_fp32(lseg_cpp, tiny_package, tiny_encoder, tmp_path):
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(3))
    np.save(tmp_path / "x.npy", x.numpy())
    proc = run_cpp(lseg_cpp, "extract", "--aoti", tiny_package, "--input", tmp_path / "x.npy",
                   "--output", tmp_path / "f.npy")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and "(1, 512, 32, 48)" in proc.stderr
    got = torch.from_numpy(np.load(tmp_path / "f.npy"))
    assert got.dtype == torch.float32 and got.shape == (1, 512, 32, 48)
    with AOTIRunner(tiny_package) as runner:
        python_aoti = runner.infer(x)
    with torch.inference_mode():
        eager = tiny_encoder(x)
    # Same compiled library, same input: C++ and Python AOTI agree to fp32 rounding (here, bitwise);
    # limits from the library's tolerance table.
    assert check(feature_metrics(got, python_aoti), "fp32")
    assert check(feature_metrics(got, eager), "fp32")
    assert not list(tmp_path.glob("*.tmp*")), "temp file left behind"


def test_bench_prints_the_table_and_json(lseg_cpp, features, tiny_package, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cpp(lseg_cpp, "bench", "--aoti", tiny_package, "--sizes", "64x96", "--iterations", "5",
                   "--warmup", "1", "--threads", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("lseg_cpp bench: libtorch") and "5 iterations after 1 warm-up" in lines[0]
    header = next(line for line in lines if line.startswith("size"))
    assert "device-only ms (median | mean ± std)" in header and "end-to-end ms" in header
    row = next(line for line in lines if line.startswith("64x96"))
    assert "aoti-fp32" in row and "cpu" in row and row.count("±") == 2
    result = json.loads(out.read_text())
    assert result["cpu_threads"] == 1
    (entry,) = result["results"]
    assert entry["input_shape"] == [1, 3, *SIZE] and entry["device_clock"] == "steady_clock"
    for mode in ("device_only_ms", "end_to_end_ms"):
        stats = entry[mode]
        assert 0 < stats["min"] <= stats["median"] <= stats["p90"], stats
        assert stats["std"] >= 0
    # CPU package: no graph, float32 out through the caller's own buffers, no stream mode.
    assert entry["cuda_graph"] is False and entry["output_dtype"] == "fp32" and entry["host_buffers"] == "pageable"
    assert entry["stream_ms_per_frame"] is None and entry["stream_frames"] == 0
    assert result["cuda_build"] is (features["cuda"] == "ON")


def test_bench_fp16_output_and_no_cuda_graph_flags(lseg_cpp, tiny_package, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cpp(lseg_cpp, "bench", "--aoti", tiny_package, "--iterations", "3", "--warmup", "1",
                   "--output-dtype", "fp16", "--no-cuda-graph", "--host-buffers", "pageable",
                   "--stream-frames", "0", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "host fp16 out" in proc.stdout
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["output_dtype"] == "fp16" and entry["cuda_graph"] is False
    assert 0 < entry["end_to_end_ms"]["min"]


def test_extract_fp16_output_is_the_fp32_output_rounded(lseg_cpp, tiny_package, tmp_path):
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(5))
    np.save(tmp_path / "x.npy", x.numpy())
    runs = {}
    for dtype in ("fp32", "fp16"):
        proc = run_cpp(lseg_cpp, "extract", "--aoti", tiny_package, "--input", tmp_path / "x.npy",
                       "--output", tmp_path / f"{dtype}.npy", "--output-dtype", dtype, "--no-cuda-graph")
        assert proc.returncode == 0, proc.stderr
        assert ("float16" if dtype == "fp16" else "float32") in proc.stderr
        runs[dtype] = np.load(tmp_path / f"{dtype}.npy")
    assert runs["fp16"].dtype == np.dtype("<f2") and runs["fp16"].shape == (1, 512, 32, 48)
    # Same compiled library and input, so the fp32 runs agree bitwise; the cast is round-to-nearest-even
    # like numpy's, so fp16 equals the fp32 features rounded, exactly.
    np.testing.assert_array_equal(runs["fp16"], runs["fp32"].astype(np.float16))
    assert check(feature_metrics(torch.from_numpy(runs["fp16"]).float(), torch.from_numpy(runs["fp32"])), "fp16")
    assert not list(tmp_path.glob("*.tmp*")), "temp file left behind"


def test_fp16_output_package_runs_in_both_output_dtypes(lseg_cpp, tiny_encoder, tmp_path):
    # A package that writes fp16 itself (package-aoti --output-dtype fp16): lseg_cpp copies its
    # features as they are for --output-dtype fp16 and casts them up for fp32, and Python agrees.
    package = aoti_package(tiny_encoder, size=SIZE, precision="fp16", output_dtype="float16")
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(6))
    np.save(tmp_path / "x.npy", x.numpy())
    runs = {}
    for dtype in ("fp32", "fp16"):
        proc = run_cpp(lseg_cpp, "extract", "--aoti", package, "--input", tmp_path / "x.npy",
                       "--output", tmp_path / f"{dtype}.npy", "--output-dtype", dtype)
        assert proc.returncode == 0, proc.stderr
        runs[dtype] = np.load(tmp_path / f"{dtype}.npy")
    with AOTIRunner(package) as runner:
        python = runner.infer(x, out_dtype=torch.float16).numpy()
    assert runs["fp16"].dtype == np.dtype("<f2") and runs["fp32"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(runs["fp16"], python)
    np.testing.assert_array_equal(runs["fp32"], runs["fp16"].astype(np.float32))


def _make_bad_inputs(folder: Path, package: Path) -> None:
    np.save(folder / "wrong_shape.npy", np.zeros((1, 3, 32, 32), np.float32))
    np.save(folder / "not_an_image.npy", np.zeros((1, 512, 32, 48), np.float32))
    np.save(folder / "float64.npy", np.zeros((1, 3, *SIZE), np.float64))
    np.save(folder / "good.npy", np.zeros((1, 3, *SIZE), np.float32))
    data = (folder / "good.npy").read_bytes()
    (folder / "truncated.npy").write_bytes(data[: len(data) // 2])
    (folder / "text.npy").write_text("hello")
    blob = package.read_bytes()
    (folder / "truncated.pt2").write_bytes(blob[: len(blob) // 2])
    (folder / "garbage.pt2").write_bytes(b"\x00" * 64)
    with zipfile.ZipFile(folder / "foreign.pt2", "w") as z:
        z.writestr("hello.txt", "hi")
    with zipfile.ZipFile(package) as zin, zipfile.ZipFile(folder / "cuda.pt2", "w") as zout:
        for name in zin.namelist():
            payload = zin.read(name)
            if name.endswith("metadata.json"):
                meta = json.loads(payload)
                meta.update({"AOTI_DEVICE_KEY": "cuda", "lseg.device": "cuda"})
                payload = json.dumps(meta).encode()
            zout.writestr(name, payload)
    (folder / "foreign.trt").write_bytes(b"this is not a serialized TensorRT engine" * 10)


BAD_EXTRACT = {
    # case: (--aoti/--engine, artefact, --input, expected message fragment)
    "missing package": ("--aoti", "nothere.pt2", "good.npy", "package file not found"),
    "not a zip": ("--aoti", "garbage.pt2", "good.npy", "not an AOTInductor .pt2 package (not a zip"),
    "truncated package": ("--aoti", "truncated.pt2", "good.npy", "not a readable AOTInductor package"),
    "foreign zip": ("--aoti", "foreign.pt2", "good.npy", "not a readable AOTInductor package"),
    "missing input": ("--aoti", "PKG", "nothere.npy", "input file not found"),
    "wrong size": ("--aoti", "PKG", "wrong_shape.npy", "does not match the package's static input shape"),
    "not an image batch": ("--aoti", "PKG", "not_an_image.npy", "expected a (B,3,H,W) float32"),
    "float64": ("--aoti", "PKG", "float64.npy", "expected little-endian float32"),
    "truncated npy": ("--aoti", "PKG", "truncated.npy", "truncated data"),
    "not npy": ("--aoti", "PKG", "text.npy", "not a .npy file"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXTRACT))
def test_bad_input_exits_nonzero_with_one_clear_line(lseg_cpp, tiny_package, tmp_path, case):
    _make_bad_inputs(tmp_path, tiny_package)
    flag, artefact, source, fragment = BAD_EXTRACT[case]
    artefact = tiny_package if artefact == "PKG" else artefact
    proc = run_cpp(lseg_cpp, "extract", flag, artefact, "--input", source, "--output", "f.npy", cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lseg_cpp: error: "), proc.stderr
    assert fragment in lines[0]
    assert not (tmp_path / "f.npy").exists()


@pytest.mark.parametrize("command", ["extract", "bench"])
def test_unwritable_output_is_one_clear_line_and_leaves_nothing(lseg_cpp, tiny_package, tmp_path, command):
    """Both writers (the features .npy, the bench JSON) go through one atomic writer."""
    _make_bad_inputs(tmp_path, tiny_package)
    target = tmp_path / "no_such_folder" / ("f.npy" if command == "extract" else "b.json")
    args = (["extract", "--aoti", tiny_package, "--input", "good.npy", "--output", target] if command == "extract"
            else ["bench", "--aoti", tiny_package, "--iterations", "1", "--warmup", "0", "--json", target])
    proc = run_cpp(lseg_cpp, *args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("lseg_cpp")]
    assert len(lines) == 1 and lines[0].startswith(f"lseg_cpp: error: {target}: cannot write the"), proc.stderr
    assert "No such file or directory" in lines[0]
    assert not target.parent.exists() and not list(tmp_path.glob("**/*.tmp*"))


@pytest.mark.usefixtures("without_cuda")  # simulates a CUDA package on a machine without CUDA
def test_cuda_package_on_cpu_machine(lseg_cpp, tiny_package, tmp_path):
    _make_bad_inputs(tmp_path, tiny_package)
    proc = run_cpp(lseg_cpp, "extract", "--aoti", "cuda.pt2", "--input", "good.npy", "--output", "f.npy",
                   cwd=tmp_path)
    assert proc.returncode == 2
    libtorch = torch.__version__.split("+")[0]
    assert proc.stderr.strip() == ("lseg_cpp: error: cuda.pt2: the package was compiled for CUDA but no CUDA "
                                   f"device is available to this lseg_cpp (libtorch {libtorch}); "
                                   "package it with --device cpu here")


@pytest.mark.parametrize("args, fragment", [
    (["bench"], "bench needs at least one --aoti or --engine"),
    (["bench", "--aoti", "PKG", "--sizes", "128"], "is not among --sizes"),
    (["bench", "--aoti", "PKG", "--iterations", "0"], "--iterations expects an integer >= 1"),
    (["extract", "--aoti", "PKG", "--input", "x.npy"], "extract needs --output"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["bench", "--aoti", "PKG", "--colour", "red"], "unknown option '--colour'"),
    (["bench", "--aoti", "PKG", "--output-dtype", "bf16"], "--output-dtype expects fp32 or fp16, got 'bf16'"),
    (["extract", "--aoti", "PKG", "--input", "x.npy", "--output", "f.npy", "--output-dtype"],
     "--output-dtype needs a value"),
    (["bench", "--aoti", "PKG", "--host-buffers", "locked"], "--host-buffers expects pinned or pageable"),
    (["bench", "--aoti", "PKG", "--stream-frames", "-1"], "--stream-frames expects an integer >= 0"),
])
def test_usage_errors(lseg_cpp, tiny_package, args, fragment):
    proc = run_cpp(lseg_cpp, *[tiny_package if a == "PKG" else a for a in args])
    assert proc.returncode == 2
    assert proc.stderr.startswith("lseg_cpp: error: ") and fragment in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_image_input(lseg_cpp, features, tiny_package, tiny_encoder, tmp_path):
    from PIL import Image

    from lseg_encoder.preprocess import preprocess, sample_image_path

    proc = run_cpp(lseg_cpp, "extract", "--aoti", tiny_package, "--input", sample_image_path(),
                   "--output", tmp_path / "cat.npy")
    if features["opencv"] != "ON":
        assert proc.returncode == 2 and "image input needs OpenCV" in proc.stderr
        pytest.skip("OpenCV not found by CMake: image input is not compiled (raw .npy input verified above); "
                    "install libopencv-dev and rebuild to run the image path")
    assert proc.returncode == 0, proc.stderr
    feats = np.load(tmp_path / "cat.npy")  # resized by OpenCV (not bit-identical to Pillow): shape + norm
    assert feats.shape == (1, 512, 32, 48)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-4)
    # An image already at the package size needs no resize: then C++ decoding + normalisation must
    # equal the Python preprocessing (lossless PNG).
    pixels = np.random.default_rng(0).integers(0, 256, (SIZE[0], SIZE[1], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / "img.png")
    proc = run_cpp(lseg_cpp, "extract", "--aoti", tiny_package, "--input", tmp_path / "img.png",
                   "--output", tmp_path / "img.npy")
    assert proc.returncode == 0, proc.stderr
    with torch.inference_mode():
        want = tiny_encoder(preprocess(tmp_path / "img.png", SIZE, "tiny"))
    assert check(feature_metrics(torch.from_numpy(np.load(tmp_path / "img.npy")), want), "fp32")


# ------------------------------------------------------------------------------------------ TensorRT
def test_tensorrt_required_but_absent_fails_configure_clearly(lseg_cpp, features, tmp_path):
    if features["tensorrt"] == "ON":
        pytest.skip("TensorRT is installed here; the 'required but absent' path cannot be exercised")
    proc = cmake_configure(tmp_path / "build", "-DLSEG_TENSORRT=ON", f"-DTensorRT_ROOT={tmp_path / 'none'}")
    assert proc.returncode != 0
    assert "LSEG_TENSORRT=ON but TensorRT was not found" in proc.stderr, proc.stderr[-2000:]


def test_engine_flag_without_tensorrt_says_how_to_enable_it(lseg_cpp, features, tiny_package, tmp_path):
    if features["tensorrt"] == "ON":
        pytest.skip("this lseg_cpp has the TensorRT backend; the foreign-engine test covers --engine")
    _make_bad_inputs(tmp_path, tiny_package)
    proc = run_cpp(lseg_cpp, "extract", "--engine", "foreign.trt", "--input", "good.npy", "--output", "f.npy",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "built without TensorRT" in proc.stderr and "-DLSEG_TENSORRT=ON" in proc.stderr


def test_tensorrt_backend_rejects_foreign_engine(lseg_cpp, features, tiny_package, tmp_path):
    if features["tensorrt"] != "ON":
        pytest.skip("TensorRT headers/libraries (NvInfer.h, libnvinfer) not found by CMake, so the --engine "
                    "backend is not compiled; TensorRT is not available from any registry reachable here. "
                    "Run where TensorRT 10+ is installed (set TensorRT_ROOT)")
    _make_bad_inputs(tmp_path, tiny_package)
    proc = run_cpp(lseg_cpp, "extract", "--engine", "foreign.trt", "--input", "good.npy", "--output", "f.npy",
                   cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lseg_cpp: error: foreign.trt: ")
    assert "not a TensorRT engine" in lines[0] or "need a CUDA device" in lines[0]
