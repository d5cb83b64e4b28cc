"""TensorRT / TensorRT-RTX backend: a serialised engine run with torch CUDA tensors as buffers.

No pycuda: input and output buffers are torch tensors on the runner's device, and
`execute_async_v3` is enqueued on `torch.cuda.current_stream()`, so the runner composes with any
torch code around it (events, streams, CUDA graphs). Tensor names, dtypes and profile shapes are
resolved once in `activate()` and checked against the engine's sidecar.

Construction only reads the sidecar (small JSON). `activate()` verifies the engine against its
sidecar and this runtime, and raises `BackendUnavailable` with the exact reason when this machine
cannot execute it (no CUDA, a GPU the flavour does not support, runtime not installed, the runtime
refusing or failing to deserialise the engine).

Execution was written against the documented API; it has not been run on this project's
hardware (TensorRT proper cannot be installed on the CI machine, and TensorRT-RTX refuses the
H100's compute capability 9.0). See docs/tensorrt.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..configs import get_config
from ..engine.backend import (
    CapturedLog,
    TrtBackend,
    current_compute_capability,
    dims,
    execution_unavailable_reason,
    load_backend,
)
from ..engine.options import Profile
from ..engine.sidecar import EngineMetadata, sidecar_path, verify_engine
from ..errors import BackendUnavailable, EngineError, InputSizeError, LsegError
from .base import InputSpec, Runner

if TYPE_CHECKING:  # the TensorRT 10.13 API (tensorrt-stubs); tensorrt_rtx has the same shape
    import tensorrt

_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                 "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
# Engine-validity diagnostics that mean "this machine cannot run it" rather than "rebuild it".
_MACHINE_DIAGNOSTICS = ("UNSUPPORTED_CC", "OLD_CUDA_DRIVER", "OLD_CUDA_RUNTIME", "INSUFFICIENT_GPU_MEMORY",
                        "CUDA_ERROR")


@dataclass
class _Session:
    """What `activate()` acquired: it exists only while the runner is active."""

    backend: TrtBackend
    runtime: tensorrt.Runtime
    engine: tensorrt.ICudaEngine
    context: tensorrt.IExecutionContext
    input: tuple[str, torch.dtype]  # (tensor name, torch dtype)
    output: tuple[str, torch.dtype]
    profile_index: int | None = None  # the profile the context is set to


@dataclass
class _Graph:
    """A captured CUDA graph and the buffers it reads and writes."""

    graph: torch.cuda.CUDAGraph
    input: torch.Tensor
    output: torch.Tensor


class TensorRTRunner(Runner):
    """Run an engine built by `lseg_encoder.engine.build_engine` (needs its `.trt.json` sidecar).

    cuda_graph: capture the enqueue in a CUDA graph on the first call (static engines only); later
    calls copy the input into the graph's buffer and replay it.
    onnx_path: also refuse the engine if this ONNX is not the one it was built from (stale engine).
    """

    backend = "tensorrt"

    def __init__(self, engine, *, device: str | torch.device = "cuda", cuda_graph: bool = False,
                 config=None, onnx_path: str | Path | None = None):
        self.engine_path = Path(getattr(engine, "path", engine))
        self.metadata = EngineMetadata.read(sidecar_path(self.engine_path))
        if config is None:
            if not self.metadata.backbone:
                raise LsegError(f"{self.engine_path}: the sidecar names no backbone; pass config=")
            config = get_config(self.metadata.backbone)
        super().__init__(config, self.metadata.precision, device)
        self.backend = self.metadata.backend["flavour"]
        self.profiles = [Profile.from_json(p) for p in self.metadata.profiles]
        self.cuda_graph = cuda_graph
        if cuda_graph and not self.metadata.is_static:
            raise LsegError("cuda_graph=True needs a static engine (one shape); this engine has profiles "
                            + "; ".join(map(str, self.profiles)))
        self.onnx_path = onnx_path
        self._reset()

    def _reset(self) -> None:
        self._session: _Session | None = None
        self._graph: _Graph | None = None
        self._log = CapturedLog()

    @property
    def _live(self) -> _Session:
        if self._session is None:
            raise LsegError(f"{self.name}: not active; call activate() first")
        return self._session

    # input validation ----------------------------------------------------------------------------
    @property
    def input_spec(self) -> InputSpec:
        name = next((r["name"] for r in self.metadata.io if r["mode"] == "input"), "image")
        lo = tuple(min(p.min[a] for p in self.profiles) for a in range(3))
        hi = tuple(max(p.max[a] for p in self.profiles) for a in range(3))
        shape = tuple(v if v == w else None for v, w in zip(lo, hi, strict=True))
        return InputSpec(name, torch.float32, (shape[0], 3, shape[1], shape[2]),
                         min_shape=(lo[0], 3, lo[1], lo[2]), max_shape=(hi[0], 3, hi[1], hi[2]))

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        b, _, h, w = (int(v) for v in x.shape)
        if not any(p.contains(b, h, w) for p in self.profiles):
            profiles = "; ".join(f"min,opt,max {p}" for p in self.profiles)
            raise InputSizeError(f"{self.name}: input shape {tuple(x.shape)} is outside every profile of "
                                 f"{self.engine_path.name}: {profiles}")

    # lifecycle -----------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        if self.device.type != "cuda":
            raise LsegError(f"TensorRT engines run on a CUDA device; got device={self.device}")
        reason = execution_unavailable_reason(self.device, self.backend)
        if reason:
            raise BackendUnavailable(reason)
        trt = load_backend(self.backend)
        cc = current_compute_capability(self.device)
        gpu = torch.cuda.get_device_name(self.device)
        data = self.engine_path.read_bytes()
        verify_engine(self.engine_path, backend=trt, onnx_path=self.onnx_path, compute_capability=cc,
                      engine_bytes=data)
        log = self._log
        runtime = trt.module.Runtime(trt.make_logger(log))
        if trt.has_engine_validity:
            validity, diagnostics = runtime.get_engine_validity(data)  # type: ignore[attr-defined]  # RTX only
            if validity.name == "INVALID":
                known = trt.module.EngineInvalidityDiagnostics  # type: ignore[attr-defined]  # RTX only
                names = [n for n, v in known.__members__.items() if int(diagnostics) & int(v)] or ["no diagnostics"]
                text = (f"{trt} reports {self.engine_path.name} invalid on {gpu} (compute capability {cc}): "
                        f"{', '.join(names)}")
                if any(n in _MACHINE_DIAGNOSTICS for n in names):
                    raise BackendUnavailable(text)
                raise EngineError(f"{text}; rebuild it: {self.metadata.rebuild_command}")
        with torch.cuda.device(self.device):
            engine = runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise BackendUnavailable(f"{trt} could not deserialise {self.engine_path.name} on {gpu}: "
                                         + ("; ".join(log.errors()) or "no reason logged"))
            context = engine.create_execution_context()
            if context is None:
                raise BackendUnavailable(f"{trt} could not create an execution context on {gpu}: "
                                         + ("; ".join(log.errors()) or "no reason logged"))
        tensor_in, tensor_out = self._resolve_tensors(trt, engine)
        self._session = _Session(trt, runtime, engine, context, tensor_in, tensor_out)

    def _resolve_tensors(self, trt: TrtBackend, engine: tensorrt.ICudaEngine
                         ) -> tuple[tuple[str, torch.dtype], tuple[str, torch.dtype]]:
        """The engine's one input and one output as (name, torch dtype), its profiles checked against the sidecar."""
        inputs: list[tuple[str, torch.dtype]] = []
        outputs: list[tuple[str, torch.dtype]] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = engine.get_tensor_dtype(name).name
            if dtype not in _TORCH_DTYPES:
                raise EngineError(f"{self.engine_path.name}: tensor {name!r} has unsupported dtype {dtype}")
            mode = engine.get_tensor_mode(name)
            (inputs if mode == trt.module.TensorIOMode.INPUT else outputs).append((name, _TORCH_DTYPES[dtype]))
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineError(f"{self.engine_path.name}: expected one input and one output, got "
                              f"{[n for n, _ in inputs]} / {[n for n, _ in outputs]}")
        recorded = [[tuple(s) for s in p.input_shapes()] for p in self.profiles]
        actual = [[tuple(dims(shape)) for shape in engine.get_tensor_profile_shape(inputs[0][0], k)]
                  for k in range(engine.num_optimization_profiles)]
        if actual != recorded:
            raise EngineError(f"{self.engine_path.name}: engine profiles {actual} differ from its sidecar "
                              f"{recorded}; rebuild it: {self.metadata.rebuild_command}")
        return inputs[0], outputs[0]

    def _deactivate_impl(self) -> None:
        self._reset()

    # inference -----------------------------------------------------------------------------------
    def _infer_impl(self, x: torch.Tensor) -> torch.Tensor:
        _, in_dtype = self._live.input
        x = x.to(self.device, in_dtype, non_blocking=True).contiguous()
        if self.cuda_graph:
            out = self._graph_infer(x)
        else:
            stream = torch.cuda.current_stream(self.device)
            out = self._prepare(x, stream)
            self._enqueue(stream)
        return out if out.dtype == torch.float32 else out.float()

    def _prepare(self, x: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
        """Select the profile, set the input shape and both tensor addresses; return the output buffer."""
        session = self._live
        ctx = session.context
        b, _, h, w = (int(v) for v in x.shape)
        index = next(k for k, p in enumerate(self.profiles) if p.contains(b, h, w))
        if index != session.profile_index:
            if not ctx.set_optimization_profile_async(index, stream.cuda_stream):
                raise EngineError(f"could not select profile {index} ({self.profiles[index]})")
            session.profile_index = index
        (in_name, _), (out_name, out_dtype) = session.input, session.output
        if not ctx.set_input_shape(in_name, tuple(x.shape)):
            raise InputSizeError(f"{self.name}: the engine rejected input shape {tuple(x.shape)} for profile "
                                 f"{self.profiles[index]}: " + "; ".join(self._log.errors()))
        out = torch.empty(dims(ctx.get_tensor_shape(out_name)), dtype=out_dtype, device=self.device)
        ctx.set_tensor_address(in_name, x.data_ptr())
        ctx.set_tensor_address(out_name, out.data_ptr())
        return out

    def _enqueue(self, stream: torch.cuda.Stream) -> None:
        if not self._live.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"{self.name}: execute_async_v3 failed: "
                              + ("; ".join(self._log.errors()) or "no reason logged"))

    def _graph_infer(self, x: torch.Tensor) -> torch.Tensor:
        if self._graph is None:
            graph_in = torch.empty_like(x)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # one eager run first: TensorRT initialises lazily
                graph_in.copy_(x)
                graph_out = self._prepare(graph_in, side)
                self._enqueue(side)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._enqueue(torch.cuda.current_stream(self.device))
            self._graph = _Graph(graph, graph_in, graph_out)
        self._graph.input.copy_(x)
        self._graph.graph.replay()
        return self._graph.output.clone()  # the graph's buffer is overwritten by the next call
