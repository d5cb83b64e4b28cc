"""H100 experiment for issue 13 (fourteenth session): the decoder's early branches on a second CUDA stream
inside one forward's CUDA graph, for batch-1 latency.

Why: at batch 1 the forward is one chain of about 240 kernels on one stream, and the goals left are
latencies (<= 1.0 ms at 260 px, <= 2.33 ms at 520). But the DPT decoder's first three branches do not
depend on the ViT's later blocks: the readout of tap k (block 5, 11, 17), its `layerK_rn` 3x3 conv and
its fusion block's `resConfUnit1` (two more 3x3 convs) need only tap k. Run on a side stream they
overlap the ViT's blocks that follow; what is left after the last block is readout 4, refinenet4 and the
three fusion blocks' `resConfUnit2` chains. Run 67's profile at 260 px: 0.24 ms of convolutions and
~0.05 ms of readout GEMMs a forward, most of it in the three early branches.

Measured here, per size, all from the shipped compiled runner's model (fp16, every default swap):
- A: the runner itself (`run_on_device`, CUDA-graph trees, finish kernel after the graph);
- B: the same model cut into pieces at the taps (each compiled by Inductor, no CUDA graphs), captured
  by hand into one CUDA graph on one stream, the finish kernel in the graph;
- C: B's pieces and order, with branches 1-3 on a side stream joined before the tail.
B against C is the overlap alone (same kernels: outputs must be equal to the bit); A against B is the
cost of cutting the compile. Per-call CUDA events (median of --iterations, rounds A-B-C interleaved) and
fidelity against eager fp32.

    PYTHONPATH=src python3 scripts/gpu_branch_streams.py --sizes 260 520
    python3 scripts/gpu_branch_streams.py --cpu-check   # the pieces equal the trunk (fp32, on the CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from lseg_encoder.model.fuse import LowPrecisionEncoder, fold_batchnorm
from lseg_encoder.model.late_upsample import upsample_x2


class Pieces(nn.Module):
    """The trunk of a `LowPrecisionEncoder` (late upsample, readout GEMMs; ViT) cut at the taps: `stem`
    (patch embedding to the first tap), `blocks(i)` (tap i-1 to tap i), `branch(i)` (tap i to what the
    fusion chain needs of it) and `tail` (the fusion chain). `forward` runs them on one stream."""

    def __init__(self, model: LowPrecisionEncoder):
        super().__init__()
        self.model = model
        enc = model.encoder
        self.vit, self.readouts, self.scratch = enc.pretrained.model, enc.pretrained.readouts, enc.scratch
        self.taps = tuple(self.vit.cfg.taps)
        self.patch = self.vit.cfg.patch
        self.dtype = model.dtype

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        t = vit.patch_embed.proj(x.to(self.dtype))
        gh, gw = t.shape[-2], t.shape[-1]
        t = t.flatten(2).transpose(1, 2)
        t = torch.cat([vit.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = t + vit.resized_pos_embed(gh, gw)
        return self.blocks(0, t)

    def blocks(self, level: int, t: torch.Tensor) -> torch.Tensor:
        """Blocks after tap `level` (0: from the embedding) up to and including tap `level + 1`."""
        lo = 0 if level == 0 else self.taps[level - 1] + 1
        for block in self.vit.blocks[lo:self.taps[level] + 1]:
            t = block(t)
        return t

    def branch(self, level: int, t: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        """Tap `level` (1-4) -> readout -> layer_rn, then resConfUnit1 (levels 1-3) or refinenet4 (level 4)."""
        s = self.scratch
        layer = getattr(s, f"layer{level}_rn")(self.readouts[str(level)](t, gh, gw))
        return s.refinenet4(layer) if level == 4 else getattr(s, f"refinenet{level}").resConfUnit1(layer)

    def tail(self, path4: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        x = path4
        for level, r in ((3, r3), (2, r2), (1, r1)):
            block = getattr(self.scratch, f"refinenet{level}")
            x = block.out_conv(block.resConfUnit2(x + r))
            if block.upsample_output:
                x = upsample_x2(x)
        return self.scratch.head1(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        t = self.stem(x)
        rs = []
        for level in range(1, 4):
            rs.append(self.branch(level, t, gh, gw))
            t = self.blocks(level, t)
        return self.tail(self.branch(4, t, gh, gw), rs[2], rs[1], rs[0])


class CompiledPieces:
    """`Pieces` compiled piece by piece (Inductor, no CUDA graphs), run on one stream or with branches 1-3 on
    `side`. The caller keeps every tensor that crosses streams alive until the graph is captured."""

    def __init__(self, pieces: Pieces, finish, compile_kw: dict):
        self.p, self.finish = pieces, finish
        c = lambda f: torch.compile(f, dynamic=False, fullgraph=True, **compile_kw)  # noqa: E731
        self.stem = c(pieces.stem)
        self.blocks = {lv: c(lambda t, lv=lv: pieces.blocks(lv, t)) for lv in (1, 2, 3)}
        self.branch = {lv: c(lambda t, gh, gw, lv=lv: pieces.branch(lv, t, gh, gw)) for lv in (1, 2, 3, 4)}
        self.tail = c(pieces.tail)

    def __call__(self, x: torch.Tensor, side: torch.cuda.Stream | None, keep: list) -> torch.Tensor:
        gh, gw = x.shape[-2] // self.p.patch, x.shape[-1] // self.p.patch
        main = torch.cuda.current_stream()
        t = self.stem(x)
        rs = []
        for level in range(1, 4):
            if side is None:
                rs.append(self.branch[level](t, gh, gw))
            else:
                side.wait_stream(main)
                with torch.cuda.stream(side):
                    rs.append(self.branch[level](t, gh, gw))
                keep.append(t)
            t = self.blocks[level](t)
        path4 = self.branch[4](t, gh, gw)
        if side is not None:
            main.wait_stream(side)
            keep.extend(rs)
        head = self.tail(path4, rs[2], rs[1], rs[0])
        return self.finish(head, torch.float32)  # as the runner passes it: the layout Inductor chose


def capture(fn, x: torch.Tensor, side, priority: int = 0) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    stream = torch.cuda.Stream(priority=priority)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(x, side, [])
    torch.cuda.synchronize()
    graph, keep = torch.cuda.CUDAGraph(), []
    with torch.cuda.graph(graph, stream=stream):
        out = fn(x, side, keep)
    torch.cuda.synchronize()
    return graph, out


def cpu_check() -> None:
    """The pieces compute the trunk (fp32 eager on the CPU, 260 px, the full ViT-L/16, synthetic weights)."""
    from gpu_lanes import synthetic_vitl16

    model = LowPrecisionEncoder(fold_batchnorm(synthetic_vitl16()), torch.float32, late_upsample=True,
                                patch_gemm=True, readout_gemm=True, defer_upsample=True).eval()
    x = torch.rand(1, 3, 260, 260, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        a, b = model.trunk(x), Pieces(model)(x)
    err = float((a - b).abs().max() / a.abs().max())
    print(f"pieces vs trunk: shape {tuple(b.shape)}, max abs diff / max abs {err:.2e}")
    assert a.shape == b.shape and err < 1e-5, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[260, 520])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=480)
    ap.add_argument("--cpu-check", action="store_true")
    args = ap.parse_args()
    if args.cpu_check:
        return cpu_check()
    from gpu_lanes import T0, call_info, log, synthetic_vitl16, time_calls

    from lseg_encoder.fidelity.metrics import feature_metrics
    from lseg_encoder.fidelity.tolerances import tolerance_for
    from lseg_encoder.runners import TorchRunner
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = {"machine": call_info(), "args": vars(args), "sizes": {}}
    save = lambda: (out_dir / "branch_streams.json").write_text(json.dumps(results, indent=1, default=str))  # noqa: E731
    enc = synthetic_vitl16()
    text = torch.nn.functional.normalize(torch.randn(10, 512, generator=torch.Generator().manual_seed(7)), dim=1)
    tol = tolerance_for("fp16")
    eager = TorchRunner(enc, "fp32", "cuda").activate()
    inputs = {s: torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s)) * 2 - 1 for s in args.sizes}
    refs = {s: eager.infer(inputs[s]) for s in args.sizes}
    eager.deactivate()
    torch.cuda.empty_cache()
    runner = CompiledRunner(enc, "fp16", "cuda").activate()
    pieces = Pieces(runner.model)
    side = torch.cuda.Stream()
    low = torch.cuda.Stream(priority=0)  # the lowest priority, under a high-priority capture stream (D)
    for s in args.sizes:
        if time.perf_counter() - T0 > args.deadline:
            results["sizes"][s] = "not run: deadline"
            continue
        x = inputs[s].cuda()
        row = results["sizes"][s] = {}
        with torch.inference_mode():
            runner.run_on_device(x, torch.float32)
            t0 = time.perf_counter()
            # one code object per piece serves every level and size: lift dynamo's recompile cap
            inductor = torch._inductor.config.patch(freezing=runner.freezing, **runner.inductor)
            limits = torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=1024)
            with inductor, limits, runner._attention_kernel():
                fns = CompiledPieces(pieces, runner._finish(), {"mode": "default"})
                g_one, out_one = capture(fns, x, None)
                g_two, out_two = capture(fns, x, side)
                g_pri, out_pri = capture(fns, x, low, priority=-1)
            row["pieces_compile_s"] = time.perf_counter() - t0
            out_a = runner.run_on_device(x, torch.float32)
            calls = {"A runner": lambda x=x: runner.run_on_device(x, torch.float32),
                     "B pieces, one stream": g_one.replay, "C branches on a side stream": g_two.replay,
                     "D as C, main stream at high priority": g_pri.replay}
            g_one.replay(), g_two.replay(), g_pri.replay()
            torch.cuda.synchronize()
            row["C equals B to the bit"] = bool(torch.equal(out_one, out_two))
            row["D equals B to the bit"] = bool(torch.equal(out_one, out_pri))
            row["B vs A max abs"] = float((out_one - out_a).abs().max())
            for name, o in (("A", out_a), ("B", out_one), ("C", out_two)):
                met = feature_metrics(o, refs[s], text)
                row[f"{name} fidelity"] = met.to_dict()
                row[f"{name} passes fp16 row"] = bool(met.pixel_cos_p01 >= tol.pixel_cos_p01
                                                      and met.label_agreement >= 0.995 and met.rel_l2 <= tol.rel_l2)
                log(f"{s} {name}: {met}")
            times = {k: [] for k in calls}
            for call in calls.values():
                time_calls(call, 20)
            for _ in range(args.rounds):
                for name, call in calls.items():
                    times[name] += time_calls(call, args.iterations)
        for name, ts in times.items():
            row[name] = {"median_ms": statistics.median(ts), "std_ms": statistics.pstdev(ts), "n": len(ts),
                         "p10_ms": sorted(ts)[len(ts) // 10], "p90_ms": sorted(ts)[9 * len(ts) // 10]}
            log(f"{s} px {name}: {row[name]['median_ms']:.4f} ms (p10 {row[name]['p10_ms']:.4f}, "
                f"p90 {row[name]['p90_ms']:.4f})")
        log(f"{s} px: C == B bitwise {row['C equals B to the bit']}; B vs A max abs {row['B vs A max abs']:.2e}; "
            f"pieces compiled and captured in {row['pieces_compile_s']:.1f} s")
        save()
        del g_one, g_two, g_pri, out_one, out_two, out_pri, fns
        torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()
