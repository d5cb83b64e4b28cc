"""Pipelined inference over a stream of frames: the device -> host copy of frame i overlaps the
compute of frame i+1.

Why: at 910 px the fp32 feature map is 424 MB and its copy to the host costs about as much as the
forward itself, so a caller that waits for each copy pays both. With two CUDA streams (compute and
copy), pinned ring buffers reused across frames and the output cast on the device (fp16 by default:
half the bytes), the per-frame cost tends to max(compute, copy) instead of their sum.

Each yielded host tensor lives in a ring of three pinned buffers: it stays valid while the caller
works on it and on the next frame, and is overwritten by the second `next()` after it (call
`.clone()` to keep it longer). On CPU the stream is plain `runner.infer` per frame.

`lanes=N` (the compiled runner on CUDA) keeps N batches in flight on N streams, each with its own
CUDA graph (`runners.lanes`), the same features to the bit: more frames a second where the compute
bounds the stream (260 px on the H100: 1.08 against 1.50 ms a frame with 3 lanes), none where the
host copy does (full features of a batch of 8 at 480 px: 14.4 ms either way; docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator

import torch

from ..errors import LsegError
from .base import Runner, copy_to_host_behind
from .lanes import check_lane_count

_RING = 3


def _reuse(buffer: torch.Tensor | None, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    dtype = dtype or like.dtype
    if buffer is None or buffer.shape != like.shape or buffer.dtype != dtype:
        buffer = torch.empty(like.shape, dtype=dtype, pin_memory=True)
    return buffer


def _staged(host_in: list, slot: int, x: torch.Tensor) -> torch.Tensor:
    """`x`, copied into the pinned `host_in[slot]` if it is pageable host memory (an asynchronous copy
    needs pinned memory); the caller knows that the slot's last copy to the device has finished."""
    if x.device.type == "cpu" and not x.is_pinned():
        host_in[slot] = _reuse(host_in[slot], x)
        x = host_in[slot].copy_(x)
    return x


def stream_infer(runner: Runner, frames: Iterable[torch.Tensor], *,
                 out_dtype: torch.dtype | None = torch.float16, lanes: int = 1) -> Iterator[torch.Tensor]:
    """Yield host features for each (B,3,H,W) float32 frame, in order (see the module docstring)."""
    check_lane_count(lanes)
    if lanes > 1:
        yield from _lane_stream(runner, frames, lanes, out_dtype or torch.float32)
        return
    if runner.device.type != "cuda":
        for x in frames:
            yield runner.infer(x, out_dtype=out_dtype)
        return
    device = runner.device
    copier = torch.cuda.Stream(device)
    host_in: list[torch.Tensor | None] = [None, None]
    host_out: list[torch.Tensor | None] = [None] * _RING
    pending: tuple[int, torch.cuda.Event] | None = None
    with torch.inference_mode():
        for i, x in enumerate(frames):
            runner.require_active()
            runner.check_input(x)
            # the staging slot was last read by the copy of frame i-2, which `pending` waited for
            x_dev = _staged(host_in, i % 2, x).to(device, non_blocking=True)
            result = runner.run_on_device(x_dev, out_dtype)  # a fresh tensor: cast or copy of the graph's
            slot = i % _RING
            host_out[slot] = _reuse(host_out[slot], result)
            done = copy_to_host_behind(result, host_out[slot], copier)
            del result
            if pending is not None:
                prev_slot, prev_done = pending
                prev_done.synchronize()
                yield host_out[prev_slot]
            pending = (slot, done)
        if pending is not None:
            pending[1].synchronize()
            yield host_out[pending[0]]


def _lane_stream(runner: Runner, frames: Iterable[torch.Tensor], count: int,
                 out_dtype: torch.dtype) -> Iterator[torch.Tensor]:
    """`stream_infer` with `count` batches in flight: frame i on lane i % count, its host copy on the
    lane's stream. Frame i is yielded once frame i + count - 1 is queued; the ring of count + 1 pinned
    outputs keeps it valid until the second `next()` after it, as in the one-lane stream."""
    if not hasattr(runner, "graph_lanes"):
        raise LsegError(f"lanes need the compiled backend on CUDA; {runner.name} has none")
    if runner.device.type != "cuda":
        raise LsegError(f"lanes are CUDA graphs on CUDA streams; {runner.name} runs on {runner.device}")
    lanes = None
    host_in: list[torch.Tensor | None] = [None] * count
    host_out: list[torch.Tensor | None] = [None] * (count + 1)
    pending: deque[tuple[int, torch.cuda.Event]] = deque()
    with torch.inference_mode():
        for i, x in enumerate(frames):
            runner.require_active()
            runner.check_input(x)
            if lanes is None or tuple(x.shape) != lanes.shape:
                while pending:  # another shape: finish the frames of the last one first
                    yield _ready(host_out, pending)
                lanes, first = runner.graph_lanes(x, count, out_dtype), i
            lane = (i - first) % count
            # this lane's last frame is done: it was yielded (waited for) before this one was queued
            x = _staged(host_in, lane, x)
            slot = i % len(host_out)
            host_out[slot] = _reuse(host_out[slot], lanes.outputs[lane])
            pending.append((slot, lanes.submit(lane, x, host_out[slot])))
            if len(pending) == count:
                yield _ready(host_out, pending)
        while pending:
            yield _ready(host_out, pending)


def _ready(host_out: list, pending: deque) -> torch.Tensor:
    slot, done = pending.popleft()
    done.synchronize()
    return host_out[slot]


def time_stream(runner: Runner, x: torch.Tensor, *, frames: int = 50, warmup: int = 5,
                out_dtype: torch.dtype | None = torch.float16, lanes: int = 1) -> float:
    """Median-free throughput figure: wall-clock ms per frame over `frames` frames of the host
    tensor `x` through `stream_infer`, after `warmup` untimed frames (a whole stream is one sample)."""
    for _ in stream_infer(runner, [x] * warmup, out_dtype=out_dtype, lanes=lanes):
        pass
    runner.synchronize()
    t0 = time.perf_counter()
    for _ in stream_infer(runner, [x] * frames, out_dtype=out_dtype, lanes=lanes):
        pass
    runner.synchronize()
    return (time.perf_counter() - t0) * 1e3 / frames
