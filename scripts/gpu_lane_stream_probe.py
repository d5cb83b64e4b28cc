"""H100 probe for issue 13 (thirteenth session): why `stream_infer(lanes=2)` was slower than one lane.

Run 75: device-only, two lanes gave 1-45 % more images a second; through `stream_infer` with fp16
host output they gave 2.1x *more* time a batch at 480 px (batch 16: 60.6 against 28.7 ms). This times
where a lane stream's wall time goes, at batch 8 x 480 px, with the stream's two steps wrapped in
host clocks: `GraphLanes.submit` (which only queues work, unless a copy blocks) and the wait for a
frame (`pipeline._ready`); then repeated streams (is it a first-call cost, such as pinning memory?),
pinned input, and the pinning of one output buffer itself.

    PYTHONPATH=src python3 scripts/gpu_lane_stream_probe.py
"""

from __future__ import annotations

import time

import torch
from gpu_lanes import log, synthetic_vitl16  # scripts/, run as a script

from lseg_encoder.runners import pipeline
from lseg_encoder.runners.compiled_runner import CompiledRunner
from lseg_encoder.runners.lanes import GraphLanes
from lseg_encoder.runners.pipeline import time_stream

SPENT: dict[str, float] = {}


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] = SPENT.get(name, 0.0) + time.perf_counter() - t
    return wrapper


def submit_via_copier(self, lane, x, host_out=None):
    """`GraphLanes.submit` with the host copy on one shared copier stream instead of the lane's stream
    (as the one-lane stream does); the lane's next replay waits for the copy to have read its output."""
    copier = getattr(GraphLanes, "_copier", None) or torch.cuda.Stream()
    GraphLanes._copier = copier
    copied = self.__dict__.setdefault("_copied", {})
    stream = self.streams[lane]
    with torch.inference_mode(), torch.cuda.stream(stream):
        if lane in copied:
            stream.wait_event(copied[lane])
        self.inputs[lane].copy_(x, non_blocking=True)
        self.graphs[lane].replay()
        computed = torch.cuda.Event()
        computed.record(stream)
    copier.wait_event(computed)
    with torch.cuda.stream(copier):
        host_out.copy_(self.outputs[lane], non_blocking=True)
        done = torch.cuda.Event()
        done.record(copier)
    copied[lane] = done
    return done


def main() -> None:
    runner = CompiledRunner(synthetic_vitl16(), "fp16", "cuda").activate()
    batch, size, frames = 8, 480, 16
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    pinned = x.pin_memory()
    out_shape = (batch, 512, size // 2, size // 2)
    for i in range(3):
        t = time.perf_counter()
        buf = torch.empty(out_shape, dtype=torch.float16, pin_memory=True)
        ms = 1e3 * (time.perf_counter() - t)
        log(f"pinning one fp16 output buffer ({buf.numel() * 2 / 1e6:.0f} MB): {ms:.1f} ms (try {i})")
        if i < 2:
            del buf
    GraphLanes.submit = timed("submit", GraphLanes.submit)
    pipeline._ready = timed("wait", pipeline._ready)
    for name, lanes, inp in (("1 lane", 1, x), ("2 lanes", 2, x), ("2 lanes again", 2, x), ("2 lanes again", 2, x),
                             ("2 lanes, pinned input", 2, pinned), ("3 lanes", 3, x), ("1 lane again", 1, x),
                             ("2 lanes, copier stream", 2, x), ("2 lanes, copier again", 2, x)):
        if "copier" in name:
            GraphLanes.submit = timed("submit", submit_via_copier)
        SPENT.clear()
        ms = time_stream(runner, inp, frames=frames, warmup=4, out_dtype=torch.float16, lanes=lanes)
        per = {k: f"{1e3 * v / (frames + 4):.2f}" for k, v in SPENT.items()}
        log(f"{name:22s}: {ms:7.2f} ms a batch ({batch * 1e3 / ms:6.1f} img/s); host ms a frame in {per}")


if __name__ == "__main__":
    main()
