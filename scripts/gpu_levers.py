"""One-call GPU measurement for issue 13: compiled-path levers, fp8, and the end-to-end host output.

For each variant (a CompiledRunner configuration) and size: compile time, device-only latency (CUDA
events), fidelity against eager fp32 (TF32 off) with the fp16 row of the tolerance table and label
agreement, and a torch.profiler breakdown of the CUDA-graph replay by kernel class. The baseline
variant also gets the end-to-end modes: fp32 host output (the old path), fp16 host output, fp16 into
a reused pinned buffer, and the pipelined stream (fp16 and fp32). Results go to $OUT/levers.json
after every step, so a run cut short still reports what it measured.

    PYTHONPATH=src python3 scripts/gpu_levers.py --variants base,flash,fp8 --sizes 260 520 910
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import torch

from lseg_encoder.fidelity.metrics import feature_metrics
from lseg_encoder.fidelity.tolerances import tolerance_for
from lseg_encoder.kernels import attention, upsample_normalize  # on CUDA, where torch brings Triton
from lseg_encoder.model import build_encoder
from lseg_encoder.runners import TorchRunner
from lseg_encoder.runners.base import host_buffer
from lseg_encoder.runners.compiled_runner import CompiledRunner
from lseg_encoder.runners.pipeline import stream_infer, time_stream
from lseg_encoder.suites.timing import encoder_flops, machine_info, time_runner
from lseg_encoder.weights.checkpoint import RawCheckpoint, load_state_strict
from lseg_encoder.weights.synthetic import synthetic_state_dict

VARIANTS = {
    "base": {},
    "flash": {"attention": "flash"},
    "efficient": {"attention": "efficient"},
    "fp8": {"precision": "fp8"},
    "fp8-flash": {"precision": "fp8", "attention": "flash"},
    "coord": {"inductor": {"coordinate_descent_tuning": True}},
    "chlast": {"channels_last": True},
    "autotune": {"mode": "max-autotune"},
    # GEMM templates only (convs stay cuDNN): a quarter of max-autotune's compile time
    "autotune-gemm": {"mode": "max-autotune", "inductor": {"max_autotune_conv_backends": "ATEN"}},
    "gelu-epi": {"gelu_epilogue": True},
    # fifth session: the output written outside the CUDA graph (split), 1x1 convs before their upsamples
    # (late), as run 8 measured them (patch GEMM off); "base" is late-split + patch GEMM since run 11
    "seed-graph": {"late_upsample": False, "finish_in_graph": True, "patch_gemm": False},  # default before run 8
    "split": {"late_upsample": False, "finish_in_graph": False, "patch_gemm": False},
    "late": {"late_upsample": True, "finish_in_graph": True, "patch_gemm": False},
    "late-split": {"late_upsample": True, "finish_in_graph": False, "patch_gemm": False},
    "patch-gemm": {"patch_gemm": True},  # run 11: on top of the defaults then; the default since
    "no-patch-gemm": {"patch_gemm": False},
    # sixth session: the readouts' 1x1 and transposed convs as GEMMs on the tokens; programmatic dependent
    # launch for Inductor's Triton kernels (a kernel starts while the one before it drains); FlexAttention
    "readout-gemm": {"readout_gemm": True},  # run 13: on top of the defaults then; the default since
    "no-readout-gemm": {"readout_gemm": False},
    # the last upsample and the normalisation as one Triton kernel outside the CUDA graph
    "fused-finish": {"fused_finish": True},
    "pdl": {"inductor": {"triton.enable_pdl": True}},
    "flex": {"_attention": "flex"},
    # seventh session: the hand-written Triton attention kernel (kernels/attention.py); the default for
    # fp16 since run 25, "sdpa" is PyTorch's SDPA choice (cuDNN on the H100), the default before
    "triton-attn": {"attention": "triton"},
    "sdpa": {"attention": "auto"},
    # run 32: Inductor keeps the ViT's residual sums unrealised for four adds and re-reads every branch
    # output in each LayerNorm kernel (run 31's source); realise them after 1 or 2 reads instead
    "realize1": {"inductor": {"realize_reads_threshold": 1}},
    "realize2": {"inductor": {"realize_reads_threshold": 2}},
    # eighth session: the fused finish kernel with a channel loop (lower registers), alone and with realize2;
    # every GEMM through cuBLASLt (its own heuristics for the 257-row GEMMs at 260 px)
    "ff-realize2": {"fused_finish": True, "inductor": {"realize_reads_threshold": 2}},
    "cublaslt": {"_blas": "cublaslt"},
    # the defaults before the eighth session made the two above defaults ("base" has them since)
    "before8": {"fused_finish": False, "inductor": {"realize_reads_threshold": 4}},
    # ninth session: cuDNN times its convolution algorithms while the bucket compiles and its CUDA graph
    # records (process-wide flag, set for this variant only; the replays keep the recorded picks)
    "cudnn-bench": {"_cudnn_benchmark": True},
    # tenth session: the attention kernel's ragged key tail in a full masked block (the default before);
    # the kernel with TMA descriptor loads and stores (scripts/attention_tma.py) in place of the shipped one
    # (wrong features under torch 2.11's Inductor, run 42: it fails to read the descriptors' metadata)
    "wide-tail": {"_narrow_tail": False},
    "tma-attn": {"_attention_fn": "tma"},
    # eleventh session: the kernel's row max from the scaled scores (the default before); the kernel with the
    # next key block's scores issued before the current block's softmax (scripts/attention_pipelined.py)
    "scaled-max": {"_raw_max": False},
    "pipelined-attn": {"_attention_fn": "pipelined"},
    # twelfth session: `gram-finish`, the finish kernel in one pass with its norms from neighbour dot products
    # (run 70, at commit 5686beb: no gain in the model; removed with its scripts and finish_module_patch)
}
T0 = time.perf_counter()
SHIPPED_ATTENTION = attention.attention_from_qkv  # what `kernel_module_patch` puts back


def kernel_module_patch(narrow_tail: bool, raw_max: bool, attention_fn: str | None) -> None:
    """What `kernels.attention` launches in the graphs compiled next (read when the graph is traced);
    `attention_fn` names an experiment in scripts/ (on sys.path when this runs as a script)."""
    attention.NARROW_TAIL = narrow_tail
    attention.RAW_MAX = raw_max
    if attention_fn == "tma":
        from attention_tma import tma_attention_from_qkv

        attention.attention_from_qkv = tma_attention_from_qkv
    elif attention_fn == "pipelined":
        from attention_pipelined import pipelined_attention_from_qkv

        attention.attention_from_qkv = pipelined_attention_from_qkv
    else:
        attention.attention_from_qkv = SHIPPED_ATTENTION


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def kernel_class(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("sdpa", "flash", "fmha", "attn", "attention")):  # cuDNN's SDPA names say "fprop"
        return "attention"
    if any(k in n for k in ("fprop", "dgrad", "wgrad", "conv", "winograd", "implicit_convolve")):
        return "conv"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "xmma", "cublas", "scaled_mm", "matmul", "sm90_")):
        return "gemm"
    if n.startswith("triton") or "upsample2_normalize" in n:  # Inductor's kernels and ours
        return "triton"
    if "memcpy" in n or "memset" in n:
        return "copy"
    return "other"


def flex_attention_copy(encoder):
    """Experiment only: a copy of `encoder` whose ViT attention calls FlexAttention (a Triton kernel
    that Inductor generates) instead of SDPA; no score_mod, no mask, so the same maths."""
    import copy

    from torch.nn.attention.flex_attention import flex_attention

    from lseg_encoder.model.vit import Attention

    class FlexAttention(Attention):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            out = flex_attention(qkv[0], qkv[1], qkv[2])
            return self.proj(out.transpose(1, 2).reshape(b, n, c))

    model = copy.deepcopy(encoder)
    for module in model.modules():
        if type(module) is Attention:
            module.__class__ = FlexAttention
    return model


def kernel_sequence(prof, reps: int) -> dict:
    """The last forward's kernels in launch order, with the idle gap before each: where the time
    between kernels goes (graph-node latency, memsets) is invisible in per-kernel sums."""
    kernels = sorted((ev for ev in prof.events() if ev.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda ev: ev.time_range.start)
    last = kernels[-(len(kernels) // reps):]
    rows, gaps = [], 0.0
    for prev, ev in zip([None] + last[:-1], last):
        gap = 0.0 if prev is None else max(0.0, ev.time_range.start - prev.time_range.end)
        gaps += gap
        rows.append([ev.name[:80], round(ev.time_range.end - ev.time_range.start, 2), round(gap, 2)])
    span = last[-1].time_range.end - last[0].time_range.start
    return {"span_us": span, "gap_us": gaps, "kernels": len(rows), "rows": rows}


def profile(runner, x_dev: torch.Tensor, reps: int = 10, trace: bool = False) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    for _ in range(3):
        runner.infer(x_dev, to_host=False)
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            runner.infer(x_dev, to_host=False)
        torch.cuda.synchronize()
    per_class, per_kernel, count = defaultdict(float), defaultdict(float), 0
    for ev in prof.key_averages():
        if ev.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = getattr(ev, "self_device_time_total", None)
        us = ev.self_cuda_time_total if us is None else us
        per_class[kernel_class(ev.key)] += us / reps / 1e3
        per_kernel[ev.key[:90]] += us / reps / 1e3
        count += ev.count
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:15]
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=70)
    res = {"ms_per_forward": dict(per_class), "kernels_per_forward": count / reps,
           "sum_ms": sum(per_class.values()), "top": top, "table": table}
    if trace:
        try:  # a diagnostic: its failure must not cost the variant's figures
            res["sequence"] = kernel_sequence(prof, reps)
        except Exception as exc:
            res["sequence_error"] = f"{type(exc).__name__}: {exc}"
    return res


def end_to_end(runner, x: torch.Tensor) -> dict:
    res = {}
    out_shape = runner.infer(x.cuda(), to_host=False).shape
    for label, kw in (("fp32", {}), ("fp16", {"out_dtype": torch.float16})):
        st = time_runner_kw(runner, x, **kw)
        res[f"single_{label}"] = st
    buf = host_buffer(out_shape, torch.float16)
    res["single_fp16_reused_pinned"] = time_runner_kw(runner, x, out_dtype=torch.float16, out=buf)
    xp = x.pin_memory()
    res["single_fp16_pinned_in_and_out"] = time_runner_kw(runner, xp, out_dtype=torch.float16, out=buf)
    res["stream_fp16"] = time_stream(runner, x, frames=30, out_dtype=torch.float16)
    res["stream_fp32"] = time_stream(runner, x, frames=30, out_dtype=None)
    # the stream returns what infer returns, frame by frame
    frames = [x, x * 0.5, x.flip(-1)]
    got = [t.clone() for t in stream_infer(runner, frames, out_dtype=torch.float16)]
    res["stream_matches_infer"] = all(torch.equal(g, runner.infer(f, out_dtype=torch.float16))
                                      for g, f in zip(got, frames))
    return res


def time_runner_kw(runner, x, iterations: int = 20, **kw) -> float:
    for _ in range(3):
        runner.infer(x, **kw)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        runner.infer(x, **kw)
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="base,flash,fp8")
    ap.add_argument("--sizes", type=int, nargs="+", default=[260, 520, 910])
    ap.add_argument("--e2e", default="base", help="variants that also get the end-to-end modes")
    ap.add_argument("--profile", default="base,flash,fp8", help="variants that get a profiler breakdown")
    ap.add_argument("--trace", default="", help="profiled variants that also record one forward's kernel sequence")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--fp16-out", action="store_true", help="also time each cell with fp16 features")
    ap.add_argument("--finish-tile", default="", help="BLOCK_C,BLOCK_X,num_warps of kernels/upsample_normalize.py")
    ap.add_argument("--attention-tile", default="", help="BLOCK_M,BLOCK_N,num_warps,num_stages of kernels/attention.py")
    ap.add_argument("--batch", type=int, default=1, help="images per call (throughput: img/s = batch / device time)")
    ap.add_argument("--deadline", type=float, default=540, help="seconds: start no new variant after this")
    ap.add_argument("--name", default="levers")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    if args.finish_tile:
        upsample_normalize.TILE = tuple(int(v) for v in args.finish_tile.split(","))
    if args.attention_tile:
        attention.TILE = tuple(int(v) for v in args.attention_tile.split(","))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    info = machine_info()
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                                         "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    info["utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    log(f"{info['nvidia_smi']} torch {info['torch']}")
    sd = synthetic_state_dict("clip_vitl16_384", include=lambda k: not k.startswith("net.clip"))
    enc = build_encoder("clip_vitl16_384")
    load_state_strict(enc, RawCheckpoint(Path("synthetic"), {k[4:]: v for k, v in sd.items()}), enc.config)
    text = torch.nn.functional.normalize(torch.randn(10, 512, generator=torch.Generator().manual_seed(7)), dim=1)
    results = {"machine": info, "args": vars(args), "eager_fp32": {}, "variants": {}}
    save = lambda: (out / f"{args.name}.json").write_text(json.dumps(results, indent=1, default=str))  # noqa: E731
    log("weights loaded")
    eager = TorchRunner(enc, "fp32", "cuda").activate()
    inputs, refs = {}, {}
    for s in args.sizes:
        inputs[s] = torch.rand(args.batch, 3, s, s, generator=torch.Generator().manual_seed(s)) * 2 - 1
        refs[s] = eager.infer(inputs[s])
        st = time_runner(eager, inputs[s], mode="device", warmup=3, iterations=15)
        results["eager_fp32"][s] = {"device_ms": st.median_ms, "gflops": encoder_flops(enc.config, s, s) / 1e9}
        log(f"eager fp32 {s}: {st.median_ms:.2f} ms")
    eager.deactivate()
    torch.cuda.empty_cache()
    save()
    tol = tolerance_for("fp16")
    for spec in args.variants.split(","):
        name, _, only = spec.partition("@")  # "chlast@520": that variant at 520 px only
        sizes = [int(v) for v in only.split("/")] if only else args.sizes
        if time.perf_counter() - T0 > args.deadline:
            results["variants"][name] = "not run: deadline"
            log(f"{name}: not run (deadline)")
            continue
        kw = dict(VARIANTS[name.split("~")[0]])  # "base~2": the same variant again (later in the call)
        precision = kw.pop("precision", "fp16")
        model = flex_attention_copy(enc) if kw.pop("_attention", None) == "flex" else enc
        blas = kw.pop("_blas", None)
        torch.backends.cudnn.benchmark = kw.pop("_cudnn_benchmark", False)
        kernel_module_patch(narrow_tail=kw.pop("_narrow_tail", True), raw_max=kw.pop("_raw_max", True),
                            attention_fn=kw.pop("_attention_fn", None))
        row = results["variants"][name] = {"kwargs": {"precision": precision, **kw}, "blas": blas or "default",
                                           "cudnn_benchmark": torch.backends.cudnn.benchmark,
                                           "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "default")}
        if blas:  # a process-wide switch, read when ATen launches a GEMM (also while a CUDA graph is captured)
            torch.backends.cuda.preferred_blas_library(blas)
        try:
            runner = CompiledRunner(model, precision, "cuda", **kw).activate()
            for s in sizes:
                x = inputs[s]
                x_dev = x.cuda()
                runner.infer(x_dev, to_host=False)
                got = runner.infer(x)
                met = feature_metrics(got, refs[s], text)
                st = time_runner(runner, x, mode="device", warmup=10, iterations=args.iterations)
                cell = row[s] = {"device_ms": st.median_ms, "std_ms": st.std_ms, "p90_ms": st.p90_ms,
                                 "compile_s": runner.compile_seconds.get((args.batch, s, s)),
                                 "images_per_s": args.batch * 1e3 / st.median_ms, "metrics": met.to_dict(),
                                 "passes_fp16_row": met.pixel_cos_p01 >= tol.pixel_cos_p01
                                 and met.label_agreement >= 0.995 and met.rel_l2 <= tol.rel_l2}
                log(f"{name} {s}: {st.median_ms:.3f} ± {st.std_ms:.3f} ms, compile {cell['compile_s']:.1f} s, {met}")
                if args.fp16_out:
                    st16 = time_runner(runner, x, mode="device", warmup=10, iterations=args.iterations,
                                       out_dtype=torch.float16)
                    cell.update(device_ms_fp16_out=st16.median_ms, std_ms_fp16_out=st16.std_ms,
                                images_per_s_fp16_out=args.batch * 1e3 / st16.median_ms)
                    log(f"  fp16 features: {st16.median_ms:.3f} ± {st16.std_ms:.3f} ms")
                if name in args.profile.split(","):
                    cell["profile"] = profile(runner, x_dev, trace=name in args.trace.split(","))
                    split = {k: round(v, 3) for k, v in cell["profile"]["ms_per_forward"].items()}
                    log(f"  profile {json.dumps(split)} kernels/forward {cell['profile']['kernels_per_forward']}")
                    if "sequence" in cell["profile"]:
                        seq = cell["profile"]["sequence"]
                        log(f"  one forward: span {seq['span_us']:.0f} us, idle between kernels {seq['gap_us']:.0f} us")
                if name in args.e2e.split(","):
                    cell["e2e_ms"] = end_to_end(runner, x)
                    log(f"  e2e {json.dumps(cell['e2e_ms'], default=lambda v: round(v, 2))}")
                save()
            runner.deactivate()
        except Exception as exc:  # one variant failing must not cost the others
            row["error"] = f"{type(exc).__name__}: {str(exc)[:800]}"
            log(f"{name} FAILED: {row['error']}")
        if blas:
            torch.backends.cuda.preferred_blas_library("default")
        torch._dynamo.reset()
        torch.cuda.empty_cache()
        save()
    log("done")


if __name__ == "__main__":
    main()
