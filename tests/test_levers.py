"""Compiled-path levers that change the model (issue 13), checked for plumbing on CPU.

Their speed and fidelity are measured on the GPU by scripts/gpu_levers.py; here the tests make sure
a lever replaces what it says, and nothing else changes the maths where the op is exact (CPU).
"""

import torch

from lseg_encoder.model import build_encoder
from lseg_encoder.model.gelu_epilogue import EpilogueGeluMlp, use_gelu_epilogue
from lseg_encoder.model.vit import Mlp


def test_gelu_epilogue_swaps_every_block_mlp_and_keeps_the_output_on_cpu():
    torch.manual_seed(0)
    enc = build_encoder("tiny").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        before = enc(x)
    assert use_gelu_epilogue(enc) == enc.config.backbone.depth
    assert not any(isinstance(m, Mlp) for m in enc.modules())
    assert sum(isinstance(m, EpilogueGeluMlp) for m in enc.modules()) == enc.config.backbone.depth
    with torch.inference_mode():
        after = enc(x)
    # CPU's _addmm_activation uses the exact GELU: same result to rounding
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


def test_gelu_epilogue_is_what_the_mlp_computes_up_to_the_tanh_approximation():
    torch.manual_seed(1)
    mlp = Mlp(16, 64)
    x = torch.randn(2, 5, 16)
    fused = EpilogueGeluMlp(mlp)
    tanh_ref = mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x), approximate="tanh"))
    with torch.inference_mode():
        got = fused(x)
    assert got.shape == (2, 5, 16)
    # within the tanh-vs-erf GELU gap of the reference, whichever GELU this device's epilogue uses
    assert (got - tanh_ref).abs().max() < 1e-3


def test_gelu_epilogue_is_the_default_only_for_low_precision_on_cuda():
    from lseg_encoder.model.gelu_epilogue import gelu_epilogue_default

    assert gelu_epilogue_default("fp16", "cuda") and gelu_epilogue_default("bf16", "cuda:1")
    assert not gelu_epilogue_default("fp32", "cuda")
    assert not gelu_epilogue_default("fp16", "cpu")


def test_compiled_runner_swaps_its_own_copy_not_the_callers_encoder():
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    enc = build_encoder("tiny").eval()
    assert CompiledRunner(enc, "fp16", "cpu").gelu_epilogue is False  # default off the GPU
    runner = CompiledRunner(enc, "fp32", "cpu", gelu_epilogue=True).activate()
    try:
        assert sum(isinstance(m, EpilogueGeluMlp) for m in runner.model.modules()) == enc.config.backbone.depth
        assert not any(isinstance(m, EpilogueGeluMlp) for m in enc.modules())
    finally:
        runner.deactivate()
