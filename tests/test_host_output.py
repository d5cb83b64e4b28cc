"""The host-output API of `Runner.infer` (fp16 output, reused host buffers), the pipelined frame
stream, and the fp8 Linear, on the tiny config (CPU here; the same code paths run on CUDA in
scripts/gpu_levers.py, whose numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import pytest
import torch

from lseg_encoder.errors import LsegError
from lseg_encoder.runners import TorchRunner
from lseg_encoder.runners.base import host_buffer
from lseg_encoder.runners.pipeline import stream_infer


@pytest.fixture(scope="module")
def runner(tiny_encoder):
    with TorchRunner(tiny_encoder, "fp32", "cpu") as r:
        yield r


def _frames(n: int, side: int = 64):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(1, 3, side, side, generator=g) for _ in range(n)]


def test_fp16_output_is_the_fp32_output_rounded(runner):
    (x,) = _frames(1)
    ref = runner.infer(x)
    half = runner.infer(x, out_dtype=torch.float16)
    assert half.dtype == torch.float16 and half.shape == ref.shape
    torch.testing.assert_close(half, ref.half(), rtol=0, atol=0)


def test_out_buffer_is_filled_and_returned(runner):
    x, y = _frames(2)
    buf = host_buffer(runner.infer(x).shape, torch.float16)
    got = runner.infer(x, out_dtype=torch.float16, out=buf)
    assert got is buf
    torch.testing.assert_close(buf, runner.infer(x).half(), rtol=0, atol=0)
    runner.infer(y, out_dtype=torch.float16, out=buf)  # reused: now holds the second frame
    torch.testing.assert_close(buf, runner.infer(y).half(), rtol=0, atol=0)


def test_out_buffer_of_wrong_shape_or_device_use_is_refused(runner):
    (x,) = _frames(1)
    with pytest.raises(LsegError, match="out= must be a host tensor"):
        runner.infer(x, out=torch.empty(1, 2, 3))
    with pytest.raises(LsegError, match="needs to_host=True"):
        runner.infer(x, to_host=False, out=torch.empty(1))


def test_stream_yields_every_frame_in_order(runner):
    frames = _frames(5)
    got = [t.clone() for t in stream_infer(runner, frames, out_dtype=torch.float16)]
    assert len(got) == len(frames)
    for t, x in zip(got, frames):
        torch.testing.assert_close(t, runner.infer(x).half(), rtol=0, atol=0)


def test_stream_checks_each_frame(runner):
    bad = [_frames(1)[0], torch.randn(1, 3, 63, 64)]
    with pytest.raises(LsegError):
        list(stream_infer(runner, bad))


def test_fp8_linear_close_to_fp32_and_not_exact():
    from lseg_encoder.model.fp8 import Fp8Linear

    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    x = torch.randn(2, 7, 64, generator=g)
    fp8 = Fp8Linear(lin, out_dtype=torch.float32, gemm_dtype=torch.bfloat16)
    try:
        got = fp8(x)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"torch._scaled_mm has no kernel for this device/build: {exc}")
    ref = lin(x).detach()
    rel = ((got - ref).norm() / ref.norm()).item()
    assert got.shape == ref.shape
    assert 1e-4 < rel < 0.08  # E4M3 keeps 3 mantissa bits: a few per cent, never exact


def test_stream_refuses_an_inactive_runner(tiny_encoder):
    runner = TorchRunner(tiny_encoder, "fp32", "cpu")
    with pytest.raises(LsegError, match="not active"):
        list(stream_infer(runner, _frames(1)))


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp4"}, "unknown precision 'fp4'"),
    ({"attention": "fast"}, "unknown attention kernel 'fast'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_compiled_runner_refuses_unknown_options(tiny_encoder, kwargs, message):
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    with pytest.raises(LsegError, match=message):
        CompiledRunner(tiny_encoder, **{"device": "cpu", "precision": "fp16", **kwargs})
