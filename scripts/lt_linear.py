"""Experiment for issue 13 (twelfth session): a Linear as one cuBLASLt call with an algorithm chosen per shape.

Why it was tried: PyTorch runs every fp16 Linear as one cublasLtMatmul with the first algorithm of
cuBLASLt's heuristic, and cannot be asked for another (its TunableOp has only that default on CUDA
builds). The op `lseg_lt::linear` of lt_linear.cpp makes the same call with any of the heuristic's
candidates (`candidates`, `choose`, `forget`).

What it showed on the H100 (docs/benchmarks.md, twelfth session): alone, another candidate was 8-19 %
faster for the four 257-row GEMMs of a ViT-L block (run 64, scripts/gpu_lt_search.py); in the model,
with every block's Linear on the op and the candidates re-timed per shape before each compile, the
forward did not move at 260, 520 or batch 16 x 480 px (runs 65, 66, at commit ffd5847, where
`CompiledRunner(tuned_gemms=True)` did this). So the library keeps PyTorch's Linears; this module
stays for the search script.

Built on first use with PyTorch's cpp_extension (a C++ compiler, ninja, and the cuBLASLt headers of
the nvidia-cublas wheel that CUDA PyTorch depends on).
"""

from __future__ import annotations

import functools
import glob
import os
import site
from dataclasses import dataclass
from pathlib import Path

import torch


def _cublas_build_flags() -> tuple[list[str], list[str]]:
    """cuBLASLt's include folder and library: the nvidia wheels CUDA PyTorch depends on, else $CUDA_HOME."""
    roots = [p for base in site.getsitepackages() for p in glob.glob(os.path.join(base, "nvidia", "*"))]
    cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    includes = [os.path.join(r, "include") for r in [*roots, cuda]
                if os.path.exists(os.path.join(r, "include", "cublasLt.h"))]
    libs = [p for r in roots for p in glob.glob(os.path.join(r, "lib", "libcublasLt.so*"))]
    libs += glob.glob(os.path.join(cuda, "lib64", "libcublasLt.so*"))
    if not includes or not libs:
        raise SystemExit("lt_linear: cuBLASLt's headers and library not found (nvidia-cublas wheel, $CUDA_HOME)")
    lib = min(libs, key=len)  # libcublasLt.so.N: the soname PyTorch has loaded
    folder = os.path.dirname(lib)
    return includes[:1], [f"-L{folder}", f"-l:{os.path.basename(lib)}", f"-Wl,-rpath,{folder}"]


@functools.cache
def extension():
    """The compiled extension (cached by PyTorch per machine), with the op's fake implementation."""
    from torch.utils.cpp_extension import load

    includes, ldflags = _cublas_build_flags()
    module = load("lseg_lt_linear", [str(Path(__file__).with_name("lt_linear.cpp"))], extra_include_paths=includes,
                  extra_ldflags=ldflags, extra_cflags=["-O2"], with_cuda=True, verbose=False)

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
