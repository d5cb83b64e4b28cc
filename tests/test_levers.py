"""Compiled-path levers that change the model (issue 13), checked for plumbing on CPU.

Their speed and fidelity are measured on the GPU by scripts/gpu_levers.py; here the tests make sure
a lever replaces what it says, and nothing else changes the maths where the op is exact (CPU).
"""

import pytest
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


def _randomised(name: str):
    """A model whose BatchNorm statistics and conv biases are not the identity/zero of a fresh
    build, so moving a 1x1 conv across an upsample would show if it did not commute."""
    torch.manual_seed(2)
    enc = build_encoder(name).eval()
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.5, 0.5)
    return enc


def test_late_upsample_computes_the_same_features_in_fp32():
    from lseg_encoder.model.fuse import LowPrecisionEncoder, fold_batchnorm

    enc = fold_batchnorm(_randomised("tiny"))
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        before = LowPrecisionEncoder(enc, torch.float32)(x)
        late = LowPrecisionEncoder(enc, torch.float32, late_upsample=True)
        after = late.normalize(late.trunk(x))
    assert after.shape == before.shape == (1, 512, 32, 48)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    # and it is a different computation: the folded conv is not the model's head1
    assert not torch.equal(after, before)


def test_late_upsample_rewrites_a_copy_and_folds_head1_into_refinenet1():
    from lseg_encoder.model.late_upsample import ConvFirstFusionBlock, move_upsamples_late

    enc = _randomised("tiny")
    late = move_upsamples_late(enc)
    blocks = [getattr(late.scratch, f"refinenet{i}") for i in (1, 2, 3, 4)]
    assert all(isinstance(b, ConvFirstFusionBlock) for b in blocks)
    assert isinstance(late.scratch.head1, torch.nn.Identity)
    assert late.scratch.refinenet1.out_conv.out_channels == enc.config.out_dim
    assert type(enc.scratch.refinenet1).__name__ == "FusionBlock"  # the caller's model is untouched
    assert isinstance(enc.scratch.head1, torch.nn.Conv2d)


def test_normalize_writes_the_dtype_asked_for_from_fp32_normalised_features():
    from lseg_encoder.model.fuse import LowPrecisionEncoder

    head = torch.randn(1, 8, 4, 6, dtype=torch.float16)
    out = LowPrecisionEncoder.normalize(head, torch.float16)
    ref = head.float() / head.float().norm(dim=1, keepdim=True)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, ref.half(), rtol=0, atol=0)


def test_compiled_runner_defaults_split_the_finish_on_cuda_only():
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    enc = build_encoder("tiny")
    assert CompiledRunner(enc, "fp16", "cuda").finish_in_graph is False  # constructing needs no GPU
    assert CompiledRunner(enc, "fp16", "cuda").output_is_borrowed is False
    assert CompiledRunner(enc, "fp32", "cpu").finish_in_graph is True
    assert CompiledRunner(enc, "fp16", "cuda", finish_in_graph=True).output_is_borrowed is True
    assert CompiledRunner(enc, "fp32", "cpu").late_upsample is True
    assert CompiledRunner(enc, "fp32", "cpu").patch_gemm is True


def test_compiled_runner_fuses_the_finish_and_realises_residuals_for_fp16_on_cuda_only():
    """The eighth session's defaults (measured on the H100 in fp16): the fused finish kernel and
    Inductor's realize_reads_threshold 2; a caller's Inductor settings go on top, not instead."""
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    enc = build_encoder("tiny")
    fast = CompiledRunner(enc, "fp16", "cuda")  # constructing needs no GPU
    assert fast.fused_finish is True and fast.inductor == {"realize_reads_threshold": 2}
    assert CompiledRunner(enc, "bf16", "cuda").fused_finish is True
    for other in (CompiledRunner(enc, "fp32", "cuda"), CompiledRunner(enc, "fp32", "cpu"),
                  CompiledRunner(enc, "fp16", "cuda", finish_in_graph=True),
                  CompiledRunner(enc, "fp16", "cuda", late_upsample=False)):
        assert other.fused_finish is False
    assert CompiledRunner(enc, "fp32", "cuda").inductor == {} and CompiledRunner(enc, "fp32", "cpu").inductor == {}
    mixed = CompiledRunner(enc, "fp16", "cuda", inductor={"coordinate_descent_tuning": True})
    assert mixed.inductor == {"realize_reads_threshold": 2, "coordinate_descent_tuning": True}
    assert CompiledRunner(enc, "fp16", "cuda", inductor={"realize_reads_threshold": 4}).inductor == {
        "realize_reads_threshold": 4}


def test_compiled_runner_with_the_finish_outside_the_graph_returns_owned_features():
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    enc = _randomised("tiny")
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        ref = enc(x)
    runner = CompiledRunner(enc, "fp32", "cpu", finish_in_graph=False).activate()
    try:
        assert not runner.output_is_borrowed
        a = runner.infer(x, to_host=False)
        b = runner.infer(x * 0.5, to_host=False)
        half = runner.infer(x, out_dtype=torch.float16)
        assert a.data_ptr() != b.data_ptr()  # each call's features are a tensor of their own
        torch.testing.assert_close(a, ref, rtol=0, atol=1e-5)
        assert half.dtype == torch.float16
        torch.testing.assert_close(half, a.half(), rtol=0, atol=1e-3)
        assert len(runner._compiled) == 1  # fp32 and fp16 finishes compiled with the bucket
    finally:
        runner.deactivate()
    torch._dynamo.reset()


def test_patch_embedding_as_gemm_is_the_conv_on_whole_patches():
    from lseg_encoder.model.patch_gemm import PatchGemm, patch_embedding_as_gemm

    torch.manual_seed(4)
    conv = torch.nn.Conv2d(3, 32, kernel_size=16, stride=16)
    x = torch.randn(2, 3, 70, 100)  # rows and columns beyond the last whole patch are ignored by both
    torch.testing.assert_close(PatchGemm(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a patch embedding"):
        PatchGemm(torch.nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1))
    enc = _randomised("tiny")
    fast = patch_embedding_as_gemm(enc)
    assert isinstance(fast.pretrained.model.patch_embed.proj, PatchGemm)
    assert isinstance(enc.pretrained.model.patch_embed.proj, torch.nn.Conv2d)  # the caller's model is untouched
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), enc(x), rtol=0, atol=1e-5)


def test_transposed_conv_with_kernel_equal_stride_is_one_gemm_on_token_rows():
    from lseg_encoder.model.readout_gemm import TransposedPatchGemm

    torch.manual_seed(5)
    for k in (2, 4):
        deconv = torch.nn.ConvTranspose2d(16, 8, kernel_size=k, stride=k)
        image = torch.randn(2, 16, 3, 5)
        rows = image.flatten(2).transpose(1, 2)  # (B, gh * gw, C), the readout's token layout
        torch.testing.assert_close(TransposedPatchGemm(deconv)(rows, 3, 5), deconv(image), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="kernel == stride"):
        TransposedPatchGemm(torch.nn.ConvTranspose2d(16, 8, kernel_size=4, stride=2, padding=1))


def test_readouts_as_gemms_compute_the_same_features_and_leave_the_callers_model():
    from lseg_encoder.model.readout_gemm import TokenReadout, TransposedPatchGemm, readouts_as_gemms

    enc = _randomised("tiny")
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.bias.uniform_(-0.5, 0.5)
    fast = readouts_as_gemms(enc)
    readouts = list(fast.pretrained.readouts.values())
    assert all(isinstance(r, TokenReadout) and isinstance(r.conv, torch.nn.Linear) for r in readouts)
    assert [type(r.resample).__name__ for r in readouts] == ["TransposedPatchGemm", "TransposedPatchGemm",
                                                              "Identity", "Conv2d"]
    assert isinstance(readouts[0].resample, TransposedPatchGemm)
    assert isinstance(enc.pretrained.readouts["1"].resample, torch.nn.ConvTranspose2d)  # caller's model untouched
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        _, want = enc.pretrained(x)
        _, got = fast.pretrained(x)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-5)
        torch.testing.assert_close(fast(x), enc(x), rtol=0, atol=1e-5)
