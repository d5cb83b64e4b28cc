"""The blocks' Linears on the cuBLASLt op of kernels/lt_linear (issue 13, twelfth session).

On the CPU: the rewrite (which Linears, the GELU epilogue kept, the same outputs with the op replaced
by its reference), the shapes it reports for tuning, and the refusals. On a GPU: the op itself, built
from lt_linear.cpp, against F.linear for the heuristic's first algorithm and for every candidate.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lseg_encoder.errors import LsegError
from lseg_encoder.kernels import lt_linear
from lseg_encoder.kernels.lt_linear import Shape
from lseg_encoder.model import tuned_linear
from lseg_encoder.model.gelu_epilogue import EpilogueGeluMlp
from lseg_encoder.model.tuned_linear import TunedGeluMlp, TunedLinear, gemm_shapes, use_tuned_linears
from lseg_encoder.model.vit import Block


def reference_linear(x, weight, bias, gelu):
    """What the op computes: F.linear, then tanh GELU (cuBLASLt's epilogue) where asked."""
    y = F.linear(x, weight, bias)
    return F.gelu(y, approximate="tanh") if gelu else y


@pytest.fixture
def op_as_reference(monkeypatch):
    calls = []

    def fake(x, weight, bias, gelu):
        calls.append((tuple(x.shape), tuple(weight.shape), gelu))
        return reference_linear(x, weight, bias, gelu)

    monkeypatch.setattr(tuned_linear, "linear", fake)
    return calls


def blocks(n: int = 2, dim: int = 64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[Block(dim, heads=4, mlp_ratio=4, eps=1e-6) for _ in range(n)]).eval()


def test_every_block_linear_is_swapped_and_outputs_agree(op_as_reference):
    model = blocks()
    x = torch.randn(2, 9, 64)
    want = model(x)
    assert use_tuned_linears(model) == 8
    assert sum(isinstance(m, TunedLinear) for m in model.modules()) == 8
    assert not any(type(m) is nn.Linear for m in model.modules())
    got = model(x)
    assert len(op_as_reference) == 8 and not any(gelu for *_, gelu in op_as_reference)  # exact GELU stays in Mlp
    assert torch.allclose(got, want, atol=1e-5)


def test_the_gelu_epilogue_mlp_keeps_its_epilogue(op_as_reference):
    model = blocks(1)
    model[0].mlp = EpilogueGeluMlp(model[0].mlp)
    assert use_tuned_linears(model) == 4
    mlp = model[0].mlp
    assert isinstance(mlp, TunedGeluMlp) and mlp.fc1.gelu and not mlp.fc2.gelu
    x = torch.randn(1, 5, 64)
    want = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias), approximate="tanh"), mlp.fc2.weight,
                    mlp.fc2.bias)
    assert torch.allclose(mlp(x), want, atol=1e-6)


def test_gemm_shapes_lists_each_distinct_gemm_once(op_as_reference):
    model = blocks().half()
    model[1].mlp = EpilogueGeluMlp(model[1].mlp)
    use_tuned_linears(model)
    shapes = gemm_shapes(model, torch.randn(3, 7, 64).half(), model)
    assert shapes == [Shape(21, 192, 64, False), Shape(21, 64, 64, False), Shape(21, 256, 64, False),
                      Shape(21, 64, 256, False), Shape(21, 256, 64, True)]
    assert not any(h for m in model.modules() for h in getattr(m, "_forward_pre_hooks", {}).values())


def test_a_linear_without_bias_is_refused():
    with pytest.raises(ValueError, match="bias"):
        TunedLinear(nn.Linear(4, 4, bias=False))


def test_the_encoder_swaps_its_block_linears_only(op_as_reference):
    from lseg_encoder.model import build_encoder

    enc = build_encoder("tiny").eval()
    linears_before = sum(type(m) is nn.Linear for m in enc.modules())
    blocks_in_encoder = sum(isinstance(m, Block) for m in enc.modules())
    assert use_tuned_linears(enc) == 4 * blocks_in_encoder > 0
    assert sum(type(m) is nn.Linear for m in enc.modules()) == linears_before - 4 * blocks_in_encoder


def test_compiled_runner_refuses_tuned_gemms_off_cuda_or_in_fp32():
    from lseg_encoder.model import build_encoder
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    enc = build_encoder("tiny").eval()
    assert CompiledRunner(enc, "fp16", "cpu").tuned_gemms is False
    with pytest.raises(LsegError, match="CUDA and precision fp16/bf16"):
        CompiledRunner(enc, "fp16", "cpu", tuned_gemms=True)
    with pytest.raises(LsegError, match="CUDA and precision fp16/bf16"):
        CompiledRunner(enc, "fp32", "cuda", tuned_gemms=True)  # refused before any GPU is touched


def test_missing_cublas_headers_give_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(lt_linear.site, "getsitepackages", lambda: [str(tmp_path)])
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with pytest.raises(LsegError, match="cuBLASLt's headers and library"):
        lt_linear._cublas_build_flags()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cuBLASLt op runs on CUDA only (no GPU here)")
def test_op_matches_f_linear_for_every_candidate():
    ext = lt_linear.extension()
    gen = torch.Generator(device="cuda").manual_seed(0)
    for m, n, k, gelu in ((257, 3072, 1024, False), (257, 4096, 1024, True), (5, 64, 256, False)):
        shape = Shape(m, n, k, gelu)
        x = torch.randn(m, k, device="cuda", generator=gen).half()
        w = (torch.randn(n, k, device="cuda", generator=gen) * k ** -0.5).half()
        b = (torch.randn(n, device="cuda", generator=gen) * 0.1).half()
        want = reference_linear(x.float(), w.float(), b.float(), gelu)
        ext.forget(*shape.args())
        first = lt_linear.linear(x, w, b, gelu)
        assert first.shape == (m, n) and first.dtype == torch.float16
        assert (first.float() - want).abs().max().item() < 1e-2, shape
        found = ext.candidates(*shape.args(), lt_linear.WORKSPACE, 8)
        assert found, shape
        for words, workspace in found:
            ext.choose(*shape.args(), words, workspace)
            got = lt_linear.linear(x, w, b, gelu)
            assert (got.float() - want).abs().max().item() < 1e-2, (shape, words)
        ext.forget(*shape.args())
        # a (..., k) input keeps its leading dimensions
        assert lt_linear.linear(x.reshape(1, m, k), w, b, gelu).shape == (1, m, n)
    with pytest.raises(RuntimeError, match="8 words"):
        ext.choose(5, 64, 256, False, "fp16", [1, 2, 3], 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cuBLASLt op runs on CUDA only (no GPU here)")
def test_tune_keeps_the_first_algorithm_unless_a_candidate_wins_twice():
    rows = lt_linear.tune([Shape(257, 1024, 1024, False)], torch.device("cuda"))
    (row,) = rows
    assert row["candidates"] >= 1
    if row["chosen"]:
        assert row["again_best_ms"] <= (1 - lt_linear.MIN_GAIN) * row["again_first_ms"]
    else:
        assert "algo" not in row
