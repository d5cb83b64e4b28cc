"""The local engine on one device: decode (worker processes) -> compute (this thread) -> write
(background threads), overlapping, with every finished item reported through `emit`. Within compute,
a chunk's copy to the host overlaps the next chunk's forward: a chunk is started (forward and copy
queued) before the one before it is finished (waited for, writes queued).

The same function runs in-process for one device and in each spawned process for `--devices`; the
caller decides what `emit` does (append to the manifest and tick the bar, or send to the parent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .compute import FeatureComputer, JobSpec, PendingFeatures
from .decode import Decoder, ItemFailure
from .inputs import Item
from .loader import chunk_loader
from .manifest import Record
from .sinks import BackgroundWriter, feature_path


@dataclass
class StageTimes:
    """Seconds per stage. decode is summed over worker processes (CPU-seconds), so it can exceed
    the wall time; `wait` is the time compute sat idle waiting for decoded pixels. `warmup` is the
    wall time until the first batch was computed (compilation, CUDA-graph capture, allocator growth),
    `warmup_items` the items in it. Devices warm up side by side, so `add` keeps the longest warm-up
    (the steady-state rate itself is clocked by the Tally, on one clock)."""

    decode: float = 0.0
    wait: float = 0.0
    compute: float = 0.0
    write: float = 0.0
    bytes: int = 0
    load: float = 0.0
    warmup: float = 0.0
    warmup_items: int = 0

    def add(self, other: StageTimes) -> None:
        for name in ("decode", "wait", "compute", "write", "bytes", "load", "warmup_items"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.warmup = max(self.warmup, other.warmup)


@dataclass(frozen=True)
class Output:
    """Where and how items are stored."""

    out: str
    fmt: str = "npy"
    sink: str = "files"  # "files" | "none" (compute and discard: a throughput measurement)
    max_pixels: int | None = 50_000_000
    workers: int = 2
    fail_fast: bool = False


def run_items(spec: JobSpec, output: Output, items: list[Item], counter, emit: Callable[[Record], None],
              computer: FeatureComputer | None = None,
              warm: Callable[[float, float], None] | None = None) -> StageTimes:
    """Process the chunks of `items` that this process claims from `counter`; `warm(load, first_batch)`
    is called once, after the first batch has been computed (after its items were emitted), with the
    seconds this process spent loading the model and then reaching that point."""
    times = StageTimes()
    t0 = time.perf_counter()
    own = computer is None
    computer = computer or FeatureComputer(spec)
    times.load = time.perf_counter() - t0
    decoder = Decoder(spec.native_size, output.max_pixels)
    loader = chunk_loader(items, chunk=spec.batch, decoder=decoder, counter=counter, workers=output.workers,
                          stack=spec.native_size is not None, pin_memory=computer.device.type == "cuda")
    writer = BackgroundWriter(output.fmt, enabled=output.sink == "files")
    try:
        stream = iter(loader)
        started = time.perf_counter()
        pending: StartedChunk | None = None  # the chunk whose features are on their way to the host
        while True:
            t_wait = time.perf_counter()
            chunk = next(stream, None)
            times.wait += time.perf_counter() - t_wait
            if chunk is None:
                break
            try:
                current = start_chunk(computer, spec, output, chunk, items, emit)
            except ItemFailure:  # --fail-fast: the chunk before is written before the job stops
                if pending is not None:
                    times.add(finish_chunk(pending, output, writer, emit))
                raise
            if pending is not None:
                times.add(finish_chunk(pending, output, writer, emit))
            pending = current
            if not times.warmup_items:  # the first chunk is finished at once: the warm-up is its wall time
                times.add(finish_chunk(pending, output, writer, emit))
                pending = None
                computer.runner.synchronize()
                times.warmup, times.warmup_items = time.perf_counter() - started, min(spec.batch, len(items))
                if warm is not None:
                    warm(times.load, times.warmup)
        if pending is not None:
            times.add(finish_chunk(pending, output, writer, emit))
        writer.close()
    finally:
        writer.pool.shutdown(wait=True)
        if own:
            computer.close()
    times.write, times.bytes = writer.seconds, writer.bytes
    return times


@dataclass
class StartedChunk:
    """A chunk whose failures are recorded and whose features are queued: `features.result()` waits for them."""

    items: list[Item]
    features: PendingFeatures | list
    times: StageTimes


def start_chunk(computer: FeatureComputer, spec: JobSpec, output: Output, chunk, items: list[Item], emit,
                offset: int = 0) -> StartedChunk:
    """Record a decoded chunk's failures and queue its forward and its copy to the host (native recipe;
    other recipes compute here). `items[index - offset]` is the item of a chunk index."""
    times = StageTimes(decode=chunk.decode_seconds)
    for index, reason in chunk.failures:
        item = items[index - offset]
        emit(Record(item.id, item.source, "failed", reason=reason))
        if output.fail_fast:
            raise ItemFailure(f"{item.id}: {reason} (--fail-fast)")
    mine = [items[i - offset] for i in chunk.indices]
    features: PendingFeatures | list = []
    if mine:
        t_compute = time.perf_counter()
        if spec.native_size is not None:  # every image was resized to one size: one forward call
            features = computer.native_start(chunk.pixels if chunk.stacked else torch.stack(chunk.pixels))
        else:
            features = _per_image(computer, chunk, mine, emit, output.fail_fast)
        times.compute = time.perf_counter() - t_compute
    return StartedChunk(mine, features, times)


def finish_chunk(started: StartedChunk, output: Output, writer: BackgroundWriter, emit) -> StageTimes:
    """Wait for a started chunk's features and queue their writes; `compute` counts the wait."""
    times = started.times
    t_wait = time.perf_counter()
    feats = started.features.result() if isinstance(started.features, PendingFeatures) else started.features
    times.compute += time.perf_counter() - t_wait
    if started.items:
        share = times.compute / len(started.items)
        out = Path(output.out)
        for item, array in zip(started.items, feats):
            if array is not None:
                writer.submit(feature_path(out, item.id, output.fmt), array, _on_written(item, array, share, emit))
    return times


def run_chunk(computer: FeatureComputer, spec: JobSpec, output: Output, chunk, items: list[Item], emit,
              offset: int = 0) -> StageTimes:
    """One decoded chunk from start to written (Ray actors): failures recorded, features computed, writes
    finished before returning, their time and bytes counted here."""
    writer = BackgroundWriter(output.fmt, enabled=output.sink == "files")
    times = finish_chunk(start_chunk(computer, spec, output, chunk, items, emit, offset), output, writer, emit)
    writer.close()
    times.write, times.bytes = writer.seconds, writer.bytes
    return times


def _per_image(computer: FeatureComputer, chunk, items: list[Item], emit, fail_fast) -> list:
    """Recipes other than native: crops of the whole chunk batched; if the recipe refuses one image,
    the chunk is redone image by image so that only that image fails."""
    from ..errors import LsegError

    pixels = list(chunk.pixels)
    try:
        return computer.recipe_images(pixels)
    except LsegError:
        if fail_fast:
            raise
    results = []
    for item, img in zip(items, pixels):
        try:
            results.append(computer.recipe_images([img])[0])
        except LsegError as exc:
            emit(Record(item.id, item.source, "failed", reason=str(exc)))
            results.append(None)
    return results


def _on_written(item: Item, array, compute_share: float, emit):
    def done(size: int, write_seconds: float) -> None:
        emit(Record(item.id, item.source, "ok", shape=list(array.shape), dtype=str(array.dtype), bytes=size or None,
                    seconds=round(compute_share + write_seconds, 6)))
    return done
