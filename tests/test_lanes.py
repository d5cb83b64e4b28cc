"""Batches in flight on several CUDA streams (`runners.lanes`, `CompiledRunner.graph_lanes`, `stream_infer(lanes=N)`).

The refusals run everywhere. The lanes themselves are CUDA graphs on CUDA streams: on a machine
without CUDA those tests skip with the reason; on the H100 they ran natively (docs/benchmarks.md,
thirteenth session). The promise they check is exactness: every lane computes what `run_on_device`
computes, to the bit, whatever runs beside it, and the lane stream yields every frame in order.
"""

from __future__ import annotations

import pytest
import torch

from lseg_encoder.errors import LsegError
from lseg_encoder.runners import TorchRunner
from lseg_encoder.runners.compiled_runner import CompiledRunner
from lseg_encoder.runners.lanes import GraphLanes
from lseg_encoder.runners.pipeline import stream_infer
from lseg_encoder.suites.timing import time_lanes


def _frames(n: int, batch: int = 2, side: int = 64, seed: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, side, side, generator=g) * 2 - 1 for _ in range(n)]


def test_lanes_below_one_are_refused(tiny_encoder):
    with TorchRunner(tiny_encoder, "fp32", "cpu") as runner:
        with pytest.raises(LsegError, match="at least 1"):
            list(stream_infer(runner, _frames(1), lanes=0))


def test_lanes_off_cuda_are_refused_with_the_reason(tiny_encoder):
    with TorchRunner(tiny_encoder, "fp32", "cpu") as runner:
        with pytest.raises(LsegError, match="compiled backend on CUDA"):
            list(stream_infer(runner, _frames(1), lanes=2))
    runner = CompiledRunner(tiny_encoder, "fp32", "cpu", mode="default", freezing=False)
    with pytest.raises(LsegError, match="CUDA graphs on CUDA streams"):
        runner.graph_lanes(_frames(1)[0], 2)  # refused before anything is compiled
    with pytest.raises(LsegError, match="must be on CUDA"):
        GraphLanes(lambda x: x, torch.zeros(1), 2)
    with pytest.raises(LsegError, match="at least 1"):
        GraphLanes(lambda x: x, torch.zeros(1), 0)


@pytest.fixture(scope="module")
def cuda_runner(tiny_encoder):
    if not torch.cuda.is_available():
        pytest.skip("lanes are CUDA graphs on CUDA streams: this machine has no CUDA")
    with CompiledRunner(tiny_encoder, "fp16", "cuda") as runner:
        yield runner
    torch._dynamo.reset()


@pytest.mark.gpu
def test_every_lane_computes_what_the_runner_computes_to_the_bit(cuda_runner):
    frames = [x.cuda() for x in _frames(3)]
    lanes = cuda_runner.graph_lanes(frames[0], 3, torch.float32)
    assert len(lanes) == 3 and all(out.dtype == torch.float32 for out in lanes.outputs)
    events = [lanes.submit(i, x) for i, x in enumerate(frames)]  # all three in flight together
    for i, (x, done) in enumerate(zip(frames, events)):
        done.synchronize()
        want = cuda_runner.run_on_device(x, torch.float32)
        assert torch.equal(lanes.outputs[i], want), i
    assert cuda_runner.graph_lanes(frames[0], 3, torch.float32) is lanes  # kept per shape, dtype and count
    cuda_runner.drop_lanes()
    assert cuda_runner.graph_lanes(frames[0], 3, torch.float32) is not lanes
    with pytest.raises(LsegError, match="captured for input"):
        lanes.submit(0, torch.zeros(1, 3, 64, 64, device="cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("lanes", [2, 3])
def test_the_lane_stream_yields_every_frame_in_order(cuda_runner, lanes):
    # seven frames, then a frame of another size: the stream finishes the first shape's lanes first
    frames = _frames(7) + _frames(2, side=96, seed=4)
    frames[1] = frames[1].pin_memory()  # pinned host input goes straight to the lane's stream
    frames[2] = frames[2].cuda()  # and a device one
    one = [t.clone() for t in stream_infer(cuda_runner, frames, out_dtype=torch.float16)]
    got = [t.clone() for t in stream_infer(cuda_runner, frames, out_dtype=torch.float16, lanes=lanes)]
    assert len(got) == len(frames)
    for i, (a, b) in enumerate(zip(one, got)):
        assert a.dtype == b.dtype == torch.float16 and torch.equal(a, b), i


@pytest.mark.gpu
def test_time_lanes_reports_a_span_per_round(cuda_runner):
    x = _frames(1)[0].cuda()
    stats = time_lanes(cuda_runner, x, 2, batches=4, rounds=3)
    assert stats.iterations == 3 and stats.extra == {"lanes": 2, "batches_per_sample": 4} and stats.median_ms > 0
