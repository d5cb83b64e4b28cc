"""The ViT's Linears on cuBLASLt with an algorithm timed per shape, not the heuristic's first (issue 13).

Why: PyTorch runs every fp16 Linear as one cublasLtMatmul with the first algorithm cuBLASLt's heuristic
returns. The heuristic offers more: on the H100, another of its candidates was 8-19 % faster for each of
the four 257-row GEMMs of a ViT-L block (0.10 ms of the 1.46 ms forward at 260 px) and up to 20 % for
single shapes at other token counts (scripts/gpu_lt_search.py, run 64, docs/benchmarks.md twelfth
session). PyTorch cannot be asked for them: its TunableOp has only the default on CUDA builds.

So the op `lseg_lt::linear` (lt_linear.cpp, compiled on first use with PyTorch's cpp_extension: a C++
compiler, ninja, and the cuBLASLt headers of the nvidia-cublas wheel CUDA PyTorch depends on) makes the
same call as PyTorch and takes the algorithm `tune` chose for the shape. `tune` times each candidate
in a CUDA graph against the first, and keeps one only if a second timing confirms it, so a shape
where nothing wins keeps PyTorch's kernel.
"""

from __future__ import annotations

import functools
import glob
import os
import site
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LsegError

CANDIDATES = 32  # of the heuristic's list; run 64 got 14-16 per shape
WORKSPACE = 32 << 20  # the most a candidate may use (cuBLAS's own workspace on Hopper)
MIN_GAIN = 0.03  # a candidate must be this much faster twice: below it, timing noise picks algorithms


def _cublas_build_flags() -> tuple[list[str], list[str]]:
    """cuBLASLt's include folder and library: the nvidia wheels CUDA PyTorch depends on, else $CUDA_HOME."""
    roots = [p for base in site.getsitepackages() for p in glob.glob(os.path.join(base, "nvidia", "*"))]
    cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    includes = [os.path.join(r, "include") for r in [*roots, cuda]
                if os.path.exists(os.path.join(r, "include", "cublasLt.h"))]
    libs = [p for r in roots for p in glob.glob(os.path.join(r, "lib", "libcublasLt.so*"))]
    libs += glob.glob(os.path.join(cuda, "lib64", "libcublasLt.so*"))
    if not includes or not libs:
        raise LsegError("tuned GEMMs need cuBLASLt's headers and library (the nvidia-cublas wheel of CUDA "
                        "PyTorch, or $CUDA_HOME); found none")
    lib = min(libs, key=len)  # libcublasLt.so.N: the soname PyTorch has loaded
    folder = os.path.dirname(lib)
    return includes[:1], [f"-L{folder}", f"-l:{os.path.basename(lib)}", f"-Wl,-rpath,{folder}"]


@functools.cache
def extension():
    """The compiled extension (built once per machine into PyTorch's extension cache), with the op's fake
    implementation registered for tracing."""
    from torch.utils.cpp_extension import load

    includes, ldflags = _cublas_build_flags()
    source = Path(__file__).with_name("lt_linear.cpp")
    try:
        module = load("lseg_lt_linear", [str(source)], extra_include_paths=includes, extra_ldflags=ldflags,
                      extra_cflags=["-O2"], with_cuda=True, verbose=False)
    except (RuntimeError, OSError, ImportError) as exc:
        raise LsegError(f"tuned GEMMs: building {source.name} failed: {str(exc).splitlines()[-1]}") from exc

    @torch.library.register_fake("lseg_lt::linear")
    def _(x, weight, bias, gelu):
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    return module


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gelu: bool) -> torch.Tensor:
    """`F.linear(x, weight, bias)` (then tanh GELU where `gelu`) as the op, with the shape's chosen algorithm."""
    return torch.ops.lseg_lt.linear(x, weight, bias, gelu)


@dataclass(frozen=True)
class Shape:
    """One GEMM as the op sees it: rows, output and input features, the GELU epilogue, dtype."""

    m: int
    n: int
    k: int
    gelu: bool
    dtype: str = "fp16"

    def args(self) -> tuple:
        return self.m, self.n, self.k, self.gelu, self.dtype


def _time_ms(fn, reps: int = 20, samples: int = 15) -> float:
    """Median ms of `fn` over `samples` replays of a CUDA graph of `reps` calls (no launch overhead)."""
    from ..suites.timing import cuda_graph_ms

    return cuda_graph_ms(fn, reps=reps, samples=samples)


def tune(shapes: list[Shape], device: torch.device) -> list[dict]:
    """Time the heuristic's candidates for each shape against its first one and choose the fastest where
    it is at least `MIN_GAIN` faster in two timings; returns what was measured and chosen, per shape."""
    ext = extension()
    with torch.cuda.device(device):
        return [_tune_shape(ext, shape, device) for shape in shapes]


def _tune_shape(ext, shape: Shape, device: torch.device) -> dict:
    dtype = torch.float16 if shape.dtype == "fp16" else torch.bfloat16
    gen = torch.Generator(device=device).manual_seed(shape.m * 31 + shape.n)
    x = torch.randn(shape.m, shape.k, device=device, generator=gen).to(dtype)
    w = (torch.randn(shape.n, shape.k, device=device, generator=gen) * shape.k ** -0.5).to(dtype)
    b = (torch.randn(shape.n, device=device, generator=gen) * 0.1).to(dtype)

    def run():
        return linear(x, w, b, shape.gelu)

    ext.forget(*shape.args())
    first = _time_ms(run)
    timed = []
    for words, workspace in ext.candidates(*shape.args(), WORKSPACE, CANDIDATES):
        ext.choose(*shape.args(), words, workspace)
        timed.append((_time_ms(run), words, workspace))
    ext.forget(*shape.args())
    row = {"shape": shape.args(), "first_ms": first, "candidates": len(timed), "chosen": False}
    if not timed:
        return row
    best_ms, words, workspace = min(timed, key=lambda t: t[0])
    again_first = _time_ms(run)  # the minimum of many noisy timings is biased low: time both again
    ext.choose(*shape.args(), words, workspace)
    again_best = _time_ms(run)
    row.update(best_ms=best_ms, again_first_ms=again_first, again_best_ms=again_best)
    if best_ms <= (1 - MIN_GAIN) * first and again_best <= (1 - MIN_GAIN) * again_first:
        row.update(chosen=True, algo=words, workspace=workspace)
    else:
        ext.forget(*shape.args())
    return row
