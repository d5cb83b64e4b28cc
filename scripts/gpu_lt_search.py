"""Micro-benchmark for issue 13 (twelfth session): is there GEMM time left in cuBLASLt's own algorithms?

Why: the ViT's 96 GEMMs a forward are the largest item at every size (0.74 ms of 1.46 at 260 px,
about half of batch 16 x 480), and PyTorch asks cuBLASLt's heuristic for **one** algorithm per
shape (`gemm_and_bias`, requestedAlgoCount = 1). TunableOp, PyTorch's way to try others, has only the
"Default" implementation on CUDA builds (its own docstring), and Inductor's Triton GEMM templates
lost to cuBLAS at batch 1 and 16 (docs/benchmarks.md, runs 6 and 59). So no earlier run has timed the
alternatives cuBLASLt itself offers: other tiles, split-K, stream-K, cluster shapes. This asks the
heuristic for up to 64 candidates per shape, for two workspace sizes, times each with the model's
epilogue (bias; bias + GELU for fc1) and checks its output against PyTorch's call. If the best
candidate is not clearly faster than PyTorch's choice, no custom GEMM op is worth shipping.

fp16, the four Linears of a ViT-L block at the token counts of the six seed sizes and of batch
16 x 480 px. Each variant is captured 20 times into one CUDA graph and timed with CUDA events (median
of 30 replays / 20), as scripts/gpu_attention_kernel.py does. The C++ part is compiled on first use
with `torch.utils.cpp_extension.load_inline` (ninja, cuBLASLt headers from the CUDA toolkit or the
nvidia-cublas wheel).

    PYTHONPATH=src python3 scripts/gpu_lt_search.py [--rows 257 1025] [--deadline 400]
"""

from __future__ import annotations

import argparse
import faulthandler
import glob
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_attention_kernel import graph_ms  # scripts/ is on sys.path when this runs as a script

LINEARS = {"qkv": (1024, 3072), "proj": (1024, 1024), "fc1+gelu": (1024, 4096), "fc2": (4096, 1024)}
# tokens: (s / 16)^2 + 1 at 260 / 390 / 520 / 650 / 780 / 910 px; 16 x 901 at batch 16 x 480 px
ROWS = (257, 577, 1025, 1601, 2305, 3137, 14416)
WORKSPACES = (1 << 20, 32 << 20)  # PyTorch's cuBLASLt default (1 MiB) and cuBLAS's Hopper size

CPP = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <cublasLt.h>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace {

void check(cublasStatus_t status, const char* what) {
  if (std::getenv("LT_TRACE")) std::fprintf(stderr, "lt: %s -> %d\n", what, static_cast<int>(status));
  TORCH_CHECK(status == CUBLAS_STATUS_SUCCESS, what, " failed: cublasStatus ", static_cast<int>(status));
}

// out[m, n] = epilogue(x[m, k] @ w[n, k]^T + b[n]), in cuBLASLt's column-major terms
// D (n x m) = op(A) (n x k) * B (k x m) with A = w (k x n, ld k, transposed) and B = x (k x m, ld k):
// the call PyTorch's gemm_and_bias makes for a Linear.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> algos;
  int64_t workspace = 0;
};

// a handle of our own: PyTorch's is reached through ATen/cuda/CUDAContext.h, whose headers want the whole
// toolkit (cuSPARSE, cuSOLVER) where this is compile-checked
cublasLtHandle_t handle() {
  static cublasLtHandle_t own = [] {
    cublasLtHandle_t created = nullptr;
    check(cublasLtCreate(&created), "cublasLtCreate");
    return created;
  }();
  return own;
}

std::map<std::string, Plan>& plans() {
  static std::map<std::string, Plan> table;
  return table;
}

// The candidate as the heuristic returned it: its waves (the grid over the SMs) and the opaque words of the
// algorithm. Built with snprintf: run 62 crashed on the first candidate in code that formatted it with an
// std::ostringstream (and read its tile through cublasLtMatmulAlgoConfigGetAttribute); run 63, without the
// attribute reads, crashed at the same place.
std::string describe(const cublasLtMatmulHeuristicResult_t& result) {
  char text[320];
  int used = std::snprintf(text, sizeof(text), "waves %.2f algo", static_cast<double>(result.wavesCount));
  for (uint64_t word : result.algo.data) {
    if (used < 0 || used >= static_cast<int>(sizeof(text)) - 20) break;
    used += std::snprintf(text + used, sizeof(text) - static_cast<size_t>(used), " %llx",
                          static_cast<unsigned long long>(word));
  }
  return std::string(text);
}

}  // namespace

// Builds the descriptors for one shape and asks the heuristic for up to `max_algos` candidates that fit
// `workspace` bytes; returns one line per candidate (its configuration and the heuristic's workspace).
std::vector<std::string> lt_prepare(const std::string& key, int64_t m, int64_t n, int64_t k, bool gelu,
                                    int64_t workspace, int64_t max_algos) {
  Plan plan;
  plan.workspace = workspace;
  check(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)), "TRANSA");
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)), "TRANSB");
  cublasLtEpilogue_t epilogue = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
        "EPILOGUE");
  check(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16F, k, n, k), "layout A");
  check(cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16F, k, m, k), "layout B");
  check(cublasLtMatrixLayoutCreate(&plan.d, CUDA_R_16F, n, m, n), "layout D");
  cublasLtMatmulPreference_t preference = nullptr;
  check(cublasLtMatmulPreferenceCreate(&preference), "PreferenceCreate");
  uint64_t bytes = static_cast<uint64_t>(workspace);
  check(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes,
                                             sizeof(bytes)), "PREF_MAX_WORKSPACE_BYTES");
  std::vector<cublasLtMatmulHeuristicResult_t> found(static_cast<size_t>(max_algos));
  int returned = 0;
  check(cublasLtMatmulAlgoGetHeuristic(handle(), plan.op, plan.a, plan.b, plan.d,
                                       plan.d, preference, static_cast<int>(max_algos), found.data(), &returned),
        "AlgoGetHeuristic");
  cublasLtMatmulPreferenceDestroy(preference);
  std::vector<std::string> lines;
  for (int i = 0; i < returned; ++i) {
    if (std::getenv("LT_TRACE")) std::fprintf(stderr, "lt: candidate %d state %d\n", i, int(found[i].state));
    if (found[i].state != CUBLAS_STATUS_SUCCESS) continue;
    plan.algos.push_back(found[i]);
    if (std::getenv("LT_TRACE")) std::fprintf(stderr, "lt: candidate %d kept\n", i);
    lines.push_back(describe(found[i]) + " ws" + std::to_string(found[i].workspaceSize));
    if (std::getenv("LT_TRACE")) std::fprintf(stderr, "lt: candidate %d described\n", i);
  }
  plans()[key] = plan;  // the descriptors live as long as the process: a measurement script
  if (std::getenv("LT_TRACE")) std::fprintf(stderr, "lt: %zu candidates kept for %s\n", lines.size(), key.c_str());
  return lines;
}

// Runs candidate `index` of `key` on the current stream (capturable into a CUDA graph).
void lt_run(const std::string& key, int64_t index, const torch::Tensor& x, const torch::Tensor& w,
            const torch::Tensor& bias, torch::Tensor out, torch::Tensor workspace) {
  auto found = plans().find(key);
  TORCH_CHECK(found != plans().end(), "no plan ", key);
  Plan& plan = found->second;
  TORCH_CHECK(index >= 0 && index < static_cast<int64_t>(plan.algos.size()), "no candidate ", index);
  TORCH_CHECK(workspace.numel() >= plan.workspace, "workspace too small");
  const void* bias_ptr = bias.data_ptr();
  check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)),
        "BIAS_POINTER");
  float one = 1.0f, zero = 0.0f;
  check(cublasLtMatmul(handle(), plan.op, &one, w.data_ptr(), plan.a,
                       x.data_ptr(), plan.b, &zero, out.data_ptr(), plan.d, out.data_ptr(), plan.d,
                       &plan.algos[static_cast<size_t>(index)].algo, workspace.data_ptr(),
                       static_cast<size_t>(plan.workspace), c10::cuda::getCurrentCUDAStream().stream()),
        "cublasLtMatmul");
}
"""


def cublas_paths() -> tuple[list[str], list[str]]:
    """Include folders and linker flags for cuBLASLt: the nvidia wheels PyTorch depends on, else the toolkit."""
    import site

    roots = [p for base in site.getsitepackages() for p in glob.glob(os.path.join(base, "nvidia", "*"))]
    includes = [os.path.join(r, "include") for r in roots if os.path.exists(os.path.join(r, "include", "cublasLt.h"))]
    libs = [p for r in roots for p in glob.glob(os.path.join(r, "lib", "libcublasLt.so*"))]
    cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if not includes and os.path.exists(os.path.join(cuda, "include", "cublasLt.h")):
        includes = [os.path.join(cuda, "include")]
    if not libs:
        libs = glob.glob(os.path.join(cuda, "lib64", "libcublasLt.so*"))
    if not includes or not libs:
        raise SystemExit("gpu_lt_search: cublasLt.h or libcublasLt.so not found (nvidia wheels, $CUDA_HOME)")
    lib = sorted(libs, key=len)[0]
    return includes, [f"-L{os.path.dirname(lib)}", f"-l:{os.path.basename(lib)}", f"-Wl,-rpath,{os.path.dirname(lib)}"]


def build():
    from torch.utils.cpp_extension import load_inline

    includes, ldflags = cublas_paths()
    return load_inline("lseg_lt_search", cpp_sources=CPP, functions=["lt_prepare", "lt_run"],
                       extra_include_paths=includes, extra_ldflags=ldflags, with_cuda=True,
                       extra_cflags=["-O2"], verbose=False)


def torch_linear(name: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if name == "fc1+gelu":  # what model/gelu_epilogue.py runs
        return torch._addmm_activation(b, x, w.t(), use_gelu=True)
    return F.linear(x, w, b)


def search_shape(ext, name: str, m: int, deadline: float) -> dict:
    k, n = LINEARS[name]
    gen = torch.Generator(device="cuda").manual_seed(m * 7 + n)
    x = torch.randn(m, k, device="cuda", generator=gen).half()
    w = (torch.randn(n, k, device="cuda", generator=gen) * k ** -0.5).half()
    b = (torch.randn(n, device="cuda", generator=gen) * 0.1).half()
    want = torch_linear(name, x, w, b)
    reference = (x.float() @ w.float().t() + b.float())
    if name == "fc1+gelu":
        reference = F.gelu(reference, approximate="tanh")
    row = {"m": m, "n": n, "k": k, "torch_us": graph_ms(lambda: torch_linear(name, x, w, b)) * 1e3,
           "torch_err": (want.float() - reference).abs().max().item(), "candidates": []}
    out = torch.empty(m, n, device="cuda", dtype=torch.half)
    workspace = torch.empty(max(WORKSPACES), device="cuda", dtype=torch.uint8)
    for ws in WORKSPACES if ext else ():
        key = f"{name}/{m}/{ws}"
        lines = ext.lt_prepare(key, m, n, k, name == "fc1+gelu", ws, 64)
        if not row["candidates"] and ws == WORKSPACES[0]:
            print(f"  {key}: {len(lines)} candidates, first: {lines[:1]}", flush=True)
        for index, text in enumerate(lines):
            if time.monotonic() > deadline:
                row["cut_by_deadline"] = True
                return row
            try:
                ext.lt_run(key, index, x, w, b, out, workspace)
                torch.cuda.synchronize()
            except RuntimeError as error:  # a candidate the heuristic offered but the call refuses
                row["candidates"].append({"workspace": ws, "rank": index, "algo": text, "failed": str(error)})
                continue
            err = (out.float() - reference).abs().max().item()
            us = graph_ms(lambda key=key, index=index: ext.lt_run(key, index, x, w, b, out, workspace)) * 1e3
            row["candidates"].append({"workspace": ws, "rank": index, "algo": text, "us": us, "err": err})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--deadline", type=float, default=400.0, help="seconds; the rest is skipped, and said")
    parser.add_argument("--torch-only", action="store_true",
                        help="time PyTorch's calls only (to compare processes run with other cuBLAS settings)")
    parser.add_argument("--name", default="lt_search", help="stem of the JSON written under $OUT")
    args = parser.parse_args()
    faulthandler.enable()  # a crash inside cuBLASLt names the Python line that called it
    start = time.monotonic()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    ext = None if args.torch_only else build()
    print(f"[{time.monotonic() - start:6.1f}s] extension built" if ext else "PyTorch's calls only", flush=True)
    results = {"gpu": torch.cuda.get_device_name(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "blas": torch.backends.cuda.preferred_blas_library().name,
               "env": {k: v for k, v in os.environ.items() if k.startswith(("CUBLAS", "TORCH_CUBLAS"))},
               "rows": {}}
    for m in args.rows:
        per_forward = {"torch": 0.0, "best": 0.0}
        for name in LINEARS:
            row = search_shape(ext, name, m, start + args.deadline)
            results["rows"][f"{m} {name}"] = row
            # a candidate counts only if its error is within 2x PyTorch's own against the fp32 product
            fair = [c for c in row["candidates"] if c.get("err", 1e9) <= 2 * row["torch_err"] + 1e-3]
            best = min(fair, key=lambda c: c["us"]) if fair else None
            first = [c["us"] for c in row["candidates"] if c["rank"] == 0 and "us" in c]
            print(f"[{time.monotonic() - start:6.1f}s] M={m:5d} {name:8s} torch {row['torch_us']:8.2f} us"
                  f" | heuristic #0 {' / '.join(f'{u:.2f}' for u in first)} us"
                  f" | best of {len(fair)}/{len(row['candidates'])} "
                  + (f"{best['us']:8.2f} us ({best['us'] / row['torch_us'] - 1:+.1%}) {best['algo']}"
                     f" ws={best['workspace'] >> 20}MiB err {best['err']:.1e} (torch {row['torch_err']:.1e})"
                     if best else "none"), flush=True)
            per_forward["torch"] += 24 * row["torch_us"] / 1e3
            per_forward["best"] += 24 * (best["us"] if best else row["torch_us"]) / 1e3
            if row.get("cut_by_deadline"):
                break
        results["rows"][f"{m} per forward"] = per_forward
        print(f"           M={m:5d} 96 GEMMs a forward: torch {per_forward['torch']:.3f} ms,"
              f" best candidates {per_forward['best']:.3f} ms"
              f" ({per_forward['best'] - per_forward['torch']:+.3f} ms)", flush=True)
        if time.monotonic() > start + args.deadline:
            print(f"deadline: rows after M={m} not measured", flush=True)
            break
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
