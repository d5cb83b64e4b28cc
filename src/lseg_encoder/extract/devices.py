"""`--devices`: one worker process per device, one shared queue, the parent keeps the manifest.

Each process loads the model on its device and runs the local engine (`run_items`) over chunks
claimed from ONE shared counter, so a faster GPU simply claims more chunks, and each chunk is the
same batch whichever process takes it: outputs are identical to a single-device run. Workers write
their own files and send finished-item records to the parent, which appends them to the manifest
(one writer, no interleaved lines). `spawn` processes, because CUDA cannot be used after `fork`.
"""

from __future__ import annotations

import dataclasses
import os
import queue

from ..errors import LsegError
from .compute import JobSpec
from .inputs import Item
from .loader import new_counter
from .manifest import Record
from .pipeline import Output, StageTimes, run_items


def _die_with_parent() -> None:
    """Linux: a `kill -9` of the parent also ends this process (else it would keep a GPU busy)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def threads_per_device(devices: int) -> int | None:
    """Each device process's share of the cores for torch's CPU threads (model load, CPU compute), or None
    when the user chose with OMP_NUM_THREADS. Why: every process otherwise starts one thread per core, and
    on 2 H200s with 32 cores loading the model took 12 s a process against 4 s with 8 threads (run 90)."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // max(1, devices))


def _worker(spec: JobSpec, output: Output, plan: list[Item], counter, results, threads: int | None) -> None:
    """Entry point of one device process: everything it finishes goes back through `results`."""
    _die_with_parent()
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        if spec.device.startswith("cuda"):
            torch.cuda.set_device(spec.device)  # kernels launched outside a compiled graph go to this device too
        times = run_items(spec, output, plan, counter, lambda r: results.put(("record", dataclasses.asdict(r))),
                          warm=lambda load, first: results.put(("warm", (spec.device, load, first))))
        results.put(("done", dataclasses.asdict(times)))
    except LsegError as exc:
        results.put(("error", f"{spec.device}: {exc}"))
    except BaseException as exc:  # a bug or an OOM in a child must still end the parent's wait
        results.put(("error", f"{spec.device}: {exc.__class__.__name__}: {exc}"))
        raise


def run_devices(spec: JobSpec, output: Output, plan: list[Item], tally, devices: list[str]) -> StageTimes:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    counter = new_counter(ctx)
    results = ctx.Queue()
    # not daemonic: a device process starts its own decode workers
    threads = threads_per_device(len(devices))
    procs = [ctx.Process(target=_worker, args=(spec.on(d), output, plan, counter, results, threads),
                         name=f"lseg-{d}") for d in devices]
    for p in procs:
        p.start()
    stages, finished = StageTimes(), 0
    try:
        while finished < len(procs):
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    raise LsegError(f"device process {dead[0].name} died (exit code {dead[0].exitcode}); "
                                    "finished items are kept, rerun to resume") from None
                continue
            if kind == "record":
                tally(Record(**payload))
            elif kind == "warm":  # clocked here, on the parent's clock, after that device's first records
                tally.warm(*payload)
            elif kind == "done":
                stages.add(StageTimes(**payload))
                finished += 1
            else:
                raise LsegError(payload)
    finally:
        for p in procs:
            if p.is_alive() and finished < len(procs):
                p.terminate()
        for p in procs:
            p.join(timeout=30)
    return stages
