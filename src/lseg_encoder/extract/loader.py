"""Decode in worker processes, in chunks claimed from one shared counter.

A chunk is `batch` consecutive items of the plan (sorted by id). Whoever decodes it (a DataLoader
worker of this process, or of another GPU's process) yields it whole: its images, all of one size
under the native recipe, stacked into one uint8 tensor. So the batches the model sees are the same
however many workers or devices run, and outputs are identical between 1 and N workers. Claiming
from a shared counter (not a fixed split) keeps fast devices busy when others are slow.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .decode import Decoder, ItemFailure
from .inputs import Item


@dataclass
class Chunk:
    """Decoded items of one claimed chunk. `pixels`: a (B, H, W, 3) uint8 tensor when `stacked`,
    else a list of (H, W, 3) tensors; `indices` are positions in the plan of the decoded items;
    `failures` the (plan index, reason) of the others."""

    indices: list[int]
    pixels: object
    stacked: bool
    failures: list[tuple[int, str]]
    decode_seconds: float

    def pin_memory(self) -> Chunk:  # DataLoader(pin_memory=True) calls this on custom batch types
        if self.stacked:
            self.pixels = self.pixels.pin_memory()
        else:
            self.pixels = [p.pin_memory() for p in self.pixels]
        return self


def new_counter(ctx=None):
    """A process-shared claim counter (pass the same one to every loader that shares the queue)."""
    return (ctx or multiprocessing).Value("q", 0)


def decode_chunk(items: list[Item], start: int, decoder: Decoder, stack: bool) -> Chunk:
    t0 = time.perf_counter()
    indices, arrays, failures = [], [], []
    for offset, item in enumerate(items):
        try:
            arrays.append(decoder(item))
            indices.append(start + offset)
        except ItemFailure as exc:
            failures.append((start + offset, str(exc)))
    if stack and arrays and all(a.shape == arrays[0].shape for a in arrays):
        pixels, stacked = torch.from_numpy(np.stack(arrays)), True
    else:
        pixels, stacked = [torch.from_numpy(a) for a in arrays], False
    return Chunk(indices, pixels, stacked, failures, time.perf_counter() - t0)


class ChunkStream(IterableDataset):
    """Yields decoded chunks of `items` until the shared counter runs past the end."""

    def __init__(self, items: list[Item], chunk: int, decoder: Decoder, counter, stack: bool):
        self.items = items
        self.chunk = chunk
        self.decoder = decoder
        self.counter = counter
        self.stack = stack

    def claim(self) -> int:
        with self.counter.get_lock():
            start = self.counter.value
            self.counter.value = start + self.chunk
        return start

    def __iter__(self):
        info = get_worker_info()
        if info is not None:
            torch.set_num_threads(1)  # decode workers must not fight the model for cores
        while True:
            start = self.claim()
            if start >= len(self.items):
                return
            yield decode_chunk(self.items[start:start + self.chunk], start, self.decoder, self.stack)


def worker_start_method(workers: int) -> str | None:
    """How decode workers start: forked on Linux, whoever started this process. Why: a `--devices`
    process was itself spawned and would spawn its workers too (the start method is inherited), so each
    would import torch again before its first chunk, 5-7 s on 2 cores, where the one-device job forks
    them. Decode workers never touch CUDA, so forking a process that has is safe for them."""
    return "fork" if workers and sys.platform == "linux" else None


def chunk_loader(items: list[Item], *, chunk: int, decoder: Decoder, counter, workers: int, stack: bool,
                 pin_memory: bool) -> DataLoader:
    dataset = ChunkStream(items, chunk, decoder, counter, stack)
    return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=2 if workers else None, persistent_workers=False,
                      multiprocessing_context=worker_start_method(workers))
