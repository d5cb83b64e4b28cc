"""Batches in flight on several CUDA streams: one CUDA graph of the forward per lane.

Why: on one stream every kernel waits for the tail of the one before it, and the forward's
latency- and memory-bound kernels (the attention kernel at 4 blocks an SM, LayerNorms, the
store-bound finish) leave SMs idle that nothing else may use. A second batch on a second stream
fills them. On the H100 two lanes gave 3.1-3.9 % more images a second than one lane at batch 16 x 480
px (601.6-608.4 img/s in three calls), and three lanes at batch 1 17 % more at 520 px and 45 % more at
260 px (docs/benchmarks.md, thirteenth session). Latency per batch does not improve, throughput does:
this is for work over many frames whose features stay on the GPU or are small (a host copy of full
features bounds the stream at 480 px whatever the lanes).

Each lane owns a stream, a CUDA graph with its own memory pool, a static input and a static output.
Graphs are captured on their lane's stream because PyTorch keeps one cuBLAS workspace per stream and
a graph replays the workspace it was captured with: lanes captured on one stream race on it (wrong
features, run 71). CUDA-graph trees, the compiled runner's own graphs, cannot serve here: they share
one memory pool between graphs on the assumption that the graphs run one after another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ..errors import LsegError


def check_lane_count(count: int) -> None:
    """The one rule on a number of lanes, checked by every entry point before it does any work."""
    if count < 1:
        raise LsegError(f"lanes must be at least 1, got {count}")


class GraphLanes:
    """`count` CUDA graphs of `forward` on as many streams, for inputs shaped like `example`.

    `forward` maps the static input to a fresh output tensor; it is run twice per lane on the lane's
    stream before the capture (autotuning, the stream's cuBLAS workspace), under `context()`.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, count: int,
                 context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        check_lane_count(count)
        if example.device.type != "cuda":
            raise LsegError("graph lanes are CUDA graphs on CUDA streams: the example input must be on CUDA")
        self.shape, self.device = tuple(example.shape), example.device
        self.streams: list[torch.cuda.Stream] = []
        self.graphs: list[torch.cuda.CUDAGraph] = []
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        main = torch.cuda.current_stream(self.device)
        for _ in range(count):
            stream = torch.cuda.Stream(self.device)
            x = example.clone()
            stream.wait_stream(main)
            with torch.cuda.stream(stream), context():
                for _ in range(2):
                    forward(x)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream), context():  # a private memory pool per graph
                out = forward(x)
            self.streams.append(stream)
            self.graphs.append(graph)
            self.inputs.append(x)
            self.outputs.append(out)
        torch.cuda.synchronize(self.device)

    def __len__(self) -> int:
        return len(self.graphs)

    def submit(self, lane: int, x: torch.Tensor, host_out: torch.Tensor | None = None) -> torch.cuda.Event:
        """Queue one batch on `lane`: copy `x` in, replay, and copy the output into `host_out` (pinned, or
        None to leave it in `outputs[lane]`), all on the lane's stream. Returns the event after them.

        The lane's previous batch must be finished with (its event waited for) before its output or the
        pinned source of its input is reused; work on one lane is ordered by its stream."""
        if tuple(x.shape) != self.shape:
            raise LsegError(f"these lanes were captured for input {self.shape}, got {tuple(x.shape)}")
        stream = self.streams[lane]
        if x.device.type == "cuda":
            stream.wait_stream(torch.cuda.current_stream(x.device))  # x was written on the caller's stream
        # the static input is an inference tensor (captured under inference mode): written in that mode
        with torch.inference_mode(), torch.cuda.stream(stream):
            self.inputs[lane].copy_(x, non_blocking=True)
            if x.device.type == "cuda":
                x.record_stream(stream)  # the allocator must not hand x's memory out before the copy
            self.graphs[lane].replay()
            if host_out is not None:
                host_out.copy_(self.outputs[lane], non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        return done

    def replay(self, lane: int) -> None:
        """Queue `lane`'s graph on its stream with its static input as it is (for timing)."""
        with torch.cuda.stream(self.streams[lane]):
            self.graphs[lane].replay()
