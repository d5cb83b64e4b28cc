"""The GPU fast path: `torch.compile` of the encoder in fp16 with fp32 islands, one compiled
graph per (batch, H, W) bucket, optionally CUDA graphs (`mode="reduce-overhead"`).

Why this shape: the model itself is compile-friendly (no hooks, fused SDPA, pos-embed resize from
the input shape, BatchNorm folded into the convs), so Inductor sees one graph; static shapes per
bucket let it specialise kernels and let CUDA graphs remove launch gaps, which dominate below
~600 px. Compile time is recorded per bucket, separately from inference latency.

Levers (issue 13), each measured on the H100 before it became a default (docs/benchmarks.md):
`attention` pins the SDPA kernel baked into the graph ("auto" lets PyTorch choose: cuDNN on
Hopper), `channels_last` converts the decoder's convs, `inductor` patches `torch._inductor.config`
for the compile (e.g. {"coordinate_descent_tuning": True}), `gelu_epilogue` runs fc1 + GELU as one
cuBLASLt GEMM (`model.gelu_epilogue`, tanh GELU; on by default for fp16 on CUDA), and precision
"fp8" runs the ViT's big Linears as E4M3 GEMMs (`model.fp8`). `late_upsample` runs the decoder's 1x1
convs before their upsamples (`model.late_upsample`, same maths; on by default), and
`finish_in_graph=False` (the default on CUDA) replays only the trunk as a CUDA graph and writes the
features with one ordinary kernel into memory the caller owns, in the requested dtype: no copy out of
the graph's pool, no separate cast. Together 2.6 / 6.6 / 6.4 % faster at 260 / 520 / 910 px on the H100.
`patch_gemm` runs the ViT's patch embedding as one GEMM (`model.patch_gemm`; on by default: 1.4-2.2 %
faster at 260-910 px, batch 16 at 480 px 27.9 vs 28.6 ms). `readout_gemm` runs the DPT readouts' 1x1
and transposed convs as GEMMs on the tokens (`model.readout_gemm`; on by default: 0.7-1.9 % faster at
260-910 px, batch 16 at 480 px 27.86 vs 28.24 ms). `fused_finish` ends the graph before the last x2
upsample and writes the features with one Triton kernel that upsamples and normalises
(`kernels.upsample_normalize`), and Inductor's `realize_reads_threshold` of 2 stores the ViT's residual
sums after every block instead of re-reading up to five branch outputs in each LayerNorm: both on by
default for fp16/bf16 on CUDA since the eighth session (`model.fused_finish.fused_finish_default`,
`inductor_settings.inductor_defaults`; together 0.6-2.5 % faster at 260-780 px and 2.2-2.3 % at batch
16 x 480 on the H100, fidelity passing at all six sizes). fp16 AOTI packages for CUDA compile the same
graph since graph revision 8 (`model.fused_finish.FusedFinish`). `attention="triton"` runs the ViT's
attention on the hand-written kernel of `kernels.attention` (`model.kernel_attention`): no permute,
no SDPA memset; the default for fp16/bf16 on CUDA (`attention_default`; 0.3-7.4 % faster at 260-910 px
on the H100, seventh session).
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import LsegError
from ..inductor_settings import inductor_defaults
from ..model import LSegEncoder
from ..model.fuse import LowPrecisionEncoder, fold_batchnorm
from ..model.fused_finish import fused_finish_default
from ..model.gelu_epilogue import gelu_epilogue_default, use_gelu_epilogue
from ..model.kernel_attention import kernel_attention_default, use_kernel_attention
from ..precisions import TORCH_DTYPES
from .lanes import GraphLanes, check_lane_count
from .torch_runner import TorchRunner, require_device

_DTYPES = {**TORCH_DTYPES, "fp8": torch.float16}  # fp8: E4M3 GEMMs between fp16 activations
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the same compile without CUDA-graph trees, for graphs the runner captures itself (`graph_lanes`)
_UNGRAPHED = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}
_FINISH_DTYPES = (torch.float32, torch.float16)  # compiled with each bucket when the finish is split
ATTENTION = {"auto": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "triton": None}


def fused_finish_runs(device, split: bool, late_upsample: bool) -> bool:
    """Where the fused upsample + normalisation kernel can run: CUDA, the finish outside the CUDA graph,
    the last upsample deferred to it (which needs the late upsample)."""
    return device.type == "cuda" and split and late_upsample


def attention_default(precision: str, device) -> str:
    """"triton" where `model.kernel_attention.kernel_attention_default` says so, else PyTorch's SDPA."""
    return "triton" if kernel_attention_default(precision, device) else "auto"


class CompiledRunner(TorchRunner):
    backend = "compiled"

    def __init__(self, encoder, precision: str = "fp16", device="cuda", mode: str = "reduce-overhead",
                 config=None, fold_bn: bool = True, freezing: bool = True, attention: str | None = None,
                 channels_last: bool = False, inductor: dict | None = None, gelu_epilogue: bool | None = None,
                 late_upsample: bool = True, finish_in_graph: bool | None = None, patch_gemm: bool = True,
                 readout_gemm: bool = True, fused_finish: bool | None = None):
        if mode not in MODES:
            raise LsegError(f"unknown torch.compile mode {mode!r}; use one of {MODES}")
        if attention is not None and attention not in ATTENTION:
            raise LsegError(f"unknown attention kernel {attention!r}; use one of {', '.join(ATTENTION)}")
        if precision not in _DTYPES:
            raise LsegError(f"unknown precision {precision!r}; use one of {', '.join(_DTYPES)}")
        super().__init__(encoder, "fp16" if precision == "fp8" else precision, device, config)
        self.precision = precision
        self.mode = mode
        self.fold_bn = fold_bn
        self.freezing = freezing
        # the default is resolved once the device is known (and checked) as a torch.device
        self.attention = attention = attention_default(precision, self.device) if attention is None else attention
        self.channels_last = channels_last
        self.gelu_epilogue = gelu_epilogue_default(precision, self.device) if gelu_epilogue is None else gelu_epilogue
        self.inductor = {**inductor_defaults(precision, self.device), **(inductor or {})}  # the caller's on top
        self.late_upsample = late_upsample
        self.patch_gemm = patch_gemm
        self.readout_gemm = readout_gemm
        # off the GPU there are no CUDA graphs to keep the output out of: one graph, one compile
        self.finish_in_graph = self.device.type != "cuda" if finish_in_graph is None else finish_in_graph
        if fused_finish is None:
            # where it was measured and where it runs
            fused_finish = fused_finish_default(precision, self.device) and fused_finish_runs(
                self.device, self._split, late_upsample)
        if fused_finish and not fused_finish_runs(self.device, self._split, late_upsample):
            raise LsegError("fused_finish needs CUDA, CUDA graphs with the finish outside them "
                            "(finish_in_graph=False) and late_upsample")
        self.fused_finish = fused_finish
        if attention == "triton" and self.device.type != "cuda":
            raise LsegError("attention='triton' runs a CUDA kernel (kernels.attention); use 'auto' off CUDA")
        if attention == "triton" and precision == "fp32":
            raise LsegError("attention='triton' multiplies in the activation dtype, TF32 in an fp32 graph; "
                            "use precision fp16/bf16, or attention 'auto' for fp32")
        self.compile_seconds: dict[tuple[int, int, int], float] = {}
        self._compiled = {}
        self._lanes = {}

    @property
    def name(self) -> str:
        return f"compiled-{self.precision}"

    @property
    def _graphs(self) -> bool:
        return self.mode in ("reduce-overhead", "max-autotune")

    @property
    def _split(self) -> bool:
        """The trunk is a CUDA graph and the normalisation an ordinary kernel after it."""
        return self._graphs and not self.finish_in_graph

    @property
    def output_is_borrowed(self) -> bool:
        return self._graphs and self.finish_in_graph

    def _activate_impl(self) -> None:
        require_device(self.device)
        model = self._encoder_or_loader
        if not isinstance(model, LSegEncoder):
            model = model()
        if self.fold_bn:
            model = fold_batchnorm(model)
        self.model = LowPrecisionEncoder(model, _DTYPES[self.precision], late_upsample=self.late_upsample,
                                         patch_gemm=self.patch_gemm, readout_gemm=self.readout_gemm,
                                         defer_upsample=self.fused_finish)
        self.model = self.model.to(self.device).eval()
        if self.precision == "fp8":
            from ..model.fp8 import fp16_gemm_output_supported, use_fp8_linears

            gemm = None if fp16_gemm_output_supported(self.device) else torch.bfloat16
            use_fp8_linears(self.model, torch.float16, gemm)
        if self.gelu_epilogue:
            use_gelu_epilogue(self.model)
        if self.attention == "triton":
            use_kernel_attention(self.model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _deactivate_impl(self) -> None:
        self.model = None
        self._compiled.clear()
        self._lanes.clear()

    def _attention_kernel(self):
        """The SDPA backend is chosen when the graph is traced; the same context at call time keeps
        any re-trace on the same kernel."""
        backend = ATTENTION[self.attention]
        return sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()

    def _bucket(self, x: torch.Tensor, graph_trees: bool = True):
        """(trunk, finish) compiled for x's bucket; finish is None when the whole forward is
        one graph (`trunk` is then the compiled model). `graph_trees=False`: the same compile without
        torch.compile's CUDA graphs, for graphs captured by `graph_lanes`."""
        shape = (int(x.shape[0]), int(x.shape[2]), int(x.shape[3]))
        graph_trees = graph_trees and self._graphs  # without them both are one compile
        # Dynamo guards on the input's dtype and on whether it is an inference tensor (a CUDA tensor made
        # outside inference_mode keeps its autograd dispatch key; `.to(device)` of a CPU one does not),
        # and each such variant is a graph of its own. Compiling every variant here, under the lifted
        # cap, keeps a runner that serves many sizes from hitting the cap at call time (issue 13: the
        # fifth size failed with FailOnRecompileLimitHit when calls mixed host and device inputs).
        key = (*shape, x.dtype, x.is_inference(), graph_trees)
        fns = self._compiled.get(key)
        if fns is None:
            # every bucket is a new specialisation of the same forward: lift dynamo's recompile cap
            # for this compile only (a scoped patch, not a process-wide setting)
            limits = {"recompile_limit": max(torch._dynamo.config.recompile_limit, 8 * (len(self._compiled) + 2)),
                      "accumulated_recompile_limit": max(torch._dynamo.config.accumulated_recompile_limit, 1024)}
            # dynamic=False: one specialised graph per bucket, no recompiles on shape guards
            split = self._split
            mode = self.mode if graph_trees else _UNGRAPHED.get(self.mode, self.mode)
            trunk = torch.compile(self.model.trunk if split else self.model, mode=mode, dynamic=False, fullgraph=True)
            # the normalisation is never a CUDA graph: its output must be memory the caller owns
            finish = self._finish() if split else None
            fns = (trunk, finish)
            t0 = time.perf_counter()
            # freezing: weights become constants, so Inductor folds them (BN, casts) and picks conv layouts
            with torch.inference_mode(), torch._dynamo.config.patch(**limits), \
                    torch._inductor.config.patch(freezing=self.freezing, **self.inductor), self._attention_kernel():
                for _ in range(3):  # compile, then let CUDA-graph trees record and warm
                    self._forward(fns, x, torch.float32)
                if split:
                    self._forward(fns, x, torch.float16)
            self.synchronize()
            self.compile_seconds.setdefault(shape, time.perf_counter() - t0)  # the first variant of a shape
            self._compiled[key] = fns
        return fns

    def _finish(self):
        """(head, dtype) -> features: the Triton upsample + normalisation kernel, or Inductor's."""
        if self.fused_finish:
            from ..kernels.upsample_normalize import upsample2_normalize

            return upsample2_normalize
        return torch.compile(self.model.finish, dynamic=False, fullgraph=True)

    def _forward(self, fns, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        trunk, finish = fns
        if finish is None:
            return trunk(x)
        if dtype in _FINISH_DTYPES:
            return finish(trunk(x), dtype)  # one kernel writes the features in the dtype asked for
        return finish(trunk(x), torch.float32).to(dtype)

    def graph_lanes(self, example: torch.Tensor, count: int, out_dtype: torch.dtype = torch.float16) -> GraphLanes:
        """`count` lanes (`runners.lanes`) of this runner's forward for inputs shaped like `example`, features
        in `out_dtype`: for batches in flight on as many CUDA streams. Each lane computes what
        `run_on_device` computes, to the bit (the same compiled kernels). Kept per (shape, dtype, count)."""
        if self.device.type != "cuda":
            raise LsegError(f"lanes are CUDA graphs on CUDA streams; this runner is on {self.device}")
        check_lane_count(count)
        self.require_active()
        self.check_input(example)
        key = (tuple(example.shape), out_dtype, count)
        lanes = self._lanes.get(key)
        if lanes is None:
            with torch.inference_mode():
                x = example.to(self.device).clone()
                fns = self._bucket(x, graph_trees=False)

                def forward(inp: torch.Tensor) -> torch.Tensor:
                    out = self._forward(fns, inp, out_dtype)
                    return out if out.dtype == out_dtype else out.to(out_dtype)  # the whole-graph path: fp32

                lanes = self._lanes[key] = GraphLanes(forward, x, count, self._attention_kernel)
        return lanes

    def drop_lanes(self) -> None:
        """Free every lane's graph and memory pool (each set is kept until this or `deactivate`): a sweep
        over sizes would otherwise hold a pool per lane and size at once."""
        self._lanes.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def run_on_device(self, x: torch.Tensor, out_dtype: torch.dtype | None = None, *,
                      copy_borrowed: bool = True) -> torch.Tensor:
        if not self._split:
            return super().run_on_device(x, out_dtype, copy_borrowed=copy_borrowed)
        return self._run(x, out_dtype or torch.float32)  # owned memory, already in the dtype asked for

    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        # CUDA-graph outputs live in a pool that the next replay overwrites: `output_is_borrowed`
        # makes `Runner.infer` copy (or cast) them before handing them out
        return self._run(x, torch.float32)

    @torch.inference_mode()
    def _run(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        with self._attention_kernel():
            return self._forward(self._bucket(x), x, dtype)
