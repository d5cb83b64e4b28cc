"""Hand-written Triton kernels (src/lseg_encoder/kernels) against the torch ops they replace.

On a GPU they run natively; on the CPU in Triton's interpreter (TRITON_INTERPRET=1, set in a child
process because it must be set before the kernels are defined). Speed is the benchmarks' business.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

CHECK = textwrap.dedent("""
    import torch, torch.nn.functional as F
    from lseg_encoder.kernels.upsample_normalize import upsample2_normalize, upsample2_normalize_op
    from lseg_encoder.model.encoder import normalize_channels
    device = {device!r}
    torch.manual_seed(0)
    # (B, C, h, w, input dtype, channels-last input, tile): odd sizes, C not a power of 2, W not a
    # multiple of the tile, C not a multiple of the channel chunk (the masked tail of both passes)
    cases = [(1, 40, 5, 7, torch.float32, False, (16, 16, 8)), (2, 64, 6, 5, torch.float16, True, (32, 4, 4)),
             (1, 512, 9, 11, torch.float16, False, (64, 16, 8)), (1, 24, 1, 3, torch.float32, False, (8, 8, 4)),
             (1, 512, 4, 6, torch.float16, True, None)]
    for b, c, h, w, dtype, channels_last, tile in cases:
        head = (torch.randn(b, c, h, w) * 4).to(device, dtype)
        if channels_last:
            head = head.to(memory_format=torch.channels_last)
        up = F.interpolate(head.float(), scale_factor=2.0, mode="bilinear", align_corners=True)
        want = normalize_channels(up)
        for out_dtype, atol in ((torch.float32, 1e-6), (torch.float16, 5e-4)):
            got = upsample2_normalize(head, out_dtype, tile=tile)
            assert got.dtype == out_dtype and got.shape == (b, c, 2 * h, 2 * w) and got.is_contiguous()
            err = (got.float() - want).abs().max().item()
            assert err <= atol, (b, c, h, w, dtype, out_dtype, err)
            # the op that exported graphs call launches the same kernel
            assert torch.equal(upsample2_normalize_op(head, out_dtype, tile=tile), got), (b, c, h, w, out_dtype)
    print("ok")
""")


def _where():
    if torch.cuda.is_available():
        return "cuda", {}
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (the `test` extra installs it on Linux): the kernel is not checked here")
    return "cpu", {"TRITON_INTERPRET": "1"}


def _run_child(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`code` in a fresh Python with this checkout's src first on the path; `{device}` in it is the
    device the kernel runs on here (the CPU only through Triton's interpreter)."""
    device, env = _where()
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env = {**os.environ, **env, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code.format(device=device)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_upsample2_normalize_equals_upsample_then_normalize():
    run = _run_child(CHECK)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_upsample2_normalize_runs_on_a_device_that_is_not_current():
    """Triton launches on the current device: without a guard, features of a runner on cuda:1 failed
    ("cannot be accessed from Triton"), and with them `extract --devices all` (run 86)."""
    if torch.cuda.device_count() < 2:  # asked when the test runs: collection probes no GPU
        pytest.skip("needs two GPUs: the kernel on cuda:1 while cuda:0 is current")
    from lseg_encoder.kernels.upsample_normalize import upsample2_normalize

    head = torch.randn(1, 64, 6, 5, generator=torch.Generator().manual_seed(0)).to(torch.float16)
    want = upsample2_normalize(head.to("cuda:0")).cpu()
    with torch.cuda.device(0):
        got = upsample2_normalize(head.to("cuda:1"))
    assert got.device == torch.device("cuda:1") and torch.equal(got.cpu(), want)


def test_upsample2_normalize_rejects_a_map_that_is_not_4d():
    call = ("import torch\nfrom lseg_encoder.kernels.upsample_normalize import upsample2_normalize\n"
            "upsample2_normalize(torch.zeros({shape}, device={{device!r}}))")
    run = _run_child(call.format(shape="3, 4, 5"), timeout=300)
    assert run.returncode != 0 and "expected a (B, C, h, w) map" in run.stderr


def test_deferred_upsample_then_finish_is_the_same_forward_in_fp32():
    from lseg_encoder.model import build_encoder
    from lseg_encoder.model.fuse import LowPrecisionEncoder

    torch.manual_seed(3)
    enc = build_encoder("tiny").eval()
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        whole = LowPrecisionEncoder(enc, torch.float32, late_upsample=True)
        deferred = LowPrecisionEncoder(enc, torch.float32, late_upsample=True, defer_upsample=True)
        head = deferred.trunk(x)
        assert deferred.deferred_upsample and not whole.deferred_upsample
        assert head.shape[-2:] == (16, 24) and whole.trunk(x).shape[-2:] == (32, 48)
        torch.testing.assert_close(deferred.finish(head), whole(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs late_upsample"):
        LowPrecisionEncoder(enc, torch.float32, defer_upsample=True)


def test_fused_finish_exports_as_one_op_writing_contiguous_features():
    """What an AOTI package compiles (graph revision 8): the trunk, then `lseg::upsample2_normalize`
    writing NCHW-contiguous features in the dtype asked for. Exported on the CPU: the kernel itself
    is checked above (export traces it with fake tensors, which Triton's interpreter cannot run)."""
    from lseg_encoder.model import build_encoder
    from lseg_encoder.model.fuse import LowPrecisionEncoder
    from lseg_encoder.model.fused_finish import FusedFinish

    enc = build_encoder("tiny").eval()
    model = FusedFinish(LowPrecisionEncoder(enc, torch.float32, late_upsample=True, defer_upsample=True),
                        torch.float16).eval()
    with torch.no_grad():
        program = torch.export.export(model, (torch.zeros(1, 3, 64, 96),), strict=False)
    calls = [n for n in program.graph.nodes if n.op == "call_function"]
    assert str(calls[-1].target) == "lseg.upsample2_normalize.default"
    out = [n for n in program.graph.nodes if n.op == "output"][0].args[0][0].meta["val"]
    assert out.shape == (1, 512, 32, 48) and out.dtype == torch.float16 and out.is_contiguous()
    with pytest.raises(ValueError, match="defer_upsample=True"):
        FusedFinish(LowPrecisionEncoder(enc, torch.float32, late_upsample=True))


def test_finish_kernel_compiles_for_the_h100_with_inductors_argument_types():
    """Inside an AOTI package Inductor launches the kernel with its float arguments typed fp64 (a
    Python float), where Triton's own launcher passes fp32: the interpolation must stay fp32 either
    way (the ninth session's first H100 packaging failed here: a loop-carried sum turned fp64).
    Compiled for compute capability 9.0 on this machine, no GPU needed."""
    triton = pytest.importorskip("triton", reason="triton is not installed: the kernel's compile is not checked here")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from lseg_encoder.kernels.upsample_normalize import TILE, _upsample2_normalize_kernel

    ints = ("C", "h", "w", "H", "W", "sh_b", "sh_c", "sh_y", "sh_x", "so_b", "so_c", "so_y", "so_x")
    for scale in ("fp32", "fp64"):
        signature = {"head": "*fp16", "out": "*fp16", **dict.fromkeys(ints, "i32"), "scale_y": scale,
                     "scale_x": scale, "BLOCK_C": "constexpr", "BLOCK_X": "constexpr", "STREAM": "constexpr"}
        source = ASTSource(_upsample2_normalize_kernel, signature=signature,
                           constexprs={"BLOCK_C": TILE[0], "BLOCK_X": TILE[1], "STREAM": True})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": TILE[2]})
        f64 = [line for line in compiled.asm["ttgir"].splitlines() if "f64" in line and "tt.func" not in line]
        assert all("arith.truncf" in line for line in f64), (scale, f64)  # the scales only, cast on entry


def test_fused_finish_is_refused_where_it_cannot_run():
    from lseg_encoder.errors import LsegError
    from lseg_encoder.model import build_encoder
    from lseg_encoder.runners.compiled_runner import CompiledRunner

    enc = build_encoder("tiny").eval()
    with pytest.raises(LsegError, match="fused_finish needs CUDA"):
        CompiledRunner(enc, "fp32", "cpu", fused_finish=True)
    assert not CompiledRunner(enc, "fp32", "cpu").fused_finish


ATTENTION_CHECK = textwrap.dedent("""
    import torch, torch.nn.functional as F
    from lseg_encoder.kernels import attention
    from lseg_encoder.kernels.attention import attention_from_qkv
    device = {device!r}
    torch.manual_seed(0)
    # (B, N, heads, head_dim, dtype, tile, logit scale): N below, at and above a key block, N a
    # multiple of the block (no ragged tail), large logits (the running max moves between blocks)
    cases = [(1, 17, 2, 16, torch.float32, (16, 16, 4, 2), 2.0), (2, 70, 3, 32, torch.float16, (32, 16, 4, 2), 2.0),
             (1, 64, 2, 64, torch.float32, (32, 32, 4, 2), 2.0), (1, 5, 1, 16, torch.float32, (16, 16, 4, 1), 2.0),
             (1, 100, 2, 16, torch.float32, (16, 16, 4, 1), 8.0), (2, 33, 4, 16, torch.float16, (64, 64, 4, 3), 1.0),
             # a narrower tail block: 1 key left over (as at every seed size), 19 left over
             (1, 65, 2, 16, torch.float32, (32, 64, 4, 2), 8.0), (2, 83, 2, 32, torch.float16, (64, 64, 4, 3), 4.0)]
    for b, n, heads, d, dtype, tile, scale in cases:
        if device != "cpu" and dtype == torch.float32 and scale > 2:
            # tl.dot runs fp32 as TF32 on the GPU; at logits this large (std ~90 in the log2 domain) its
            # rounding of the scores reorders near-tied keys of a near one-hot softmax (max error 0.34
            # in run 56), so there these cases run in fp16, which the reference sees exactly
            dtype = torch.float16
        c = heads * d
        qkv = (torch.randn(b, n, 3 * c) * scale).to(device, dtype)
        q, k, v = qkv.float().reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        want = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        got = attention_from_qkv(qkv, heads, tile=tile)
        assert got.dtype == dtype and got.shape == (b, n, c) and got.is_contiguous()
        err = (got.float() - want).abs().max().item()
        # fp32 on the GPU: tl.dot runs TF32 (the runner keeps SDPA for fp32 for this reason)
        rel = 1e-5 if dtype == torch.float32 and device == "cpu" else 4e-3
        atol = rel * max(1.0, want.abs().max().item())
        assert err <= atol, (b, n, heads, d, dtype, err)
        # the row max of the raw scores times the scale is the max of the scaled scores, to the bit
        attention.RAW_MAX = False
        try:
            assert torch.equal(attention_from_qkv(qkv, heads, tile=tile), got), (b, n, heads, d, dtype)
        finally:
            attention.RAW_MAX = True
    print("ok")
""")


def test_attention_kernel_equals_sdpa():
    """The kernel reads q, k, v from the qkv GEMM's layout and writes the layout proj reads; checked
    against fp32 SDPA (checked failing with the softmax scale dropped and with the tail block's
    mask removed)."""
    run = _run_child(ATTENTION_CHECK)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_attention_tail_block_is_the_remainder_rounded_up():
    pytest.importorskip("triton", reason="triton is not installed: the kernel module cannot be imported")
    from lseg_encoder.kernels import attention

    # (tokens, BLOCK_N) -> keys in the masked last block: every seed size is 64k + 1 tokens, 480 px 901
    cases = {(257, 64): 16, (3137, 64): 16, (901, 64): 16, (83, 64): 32, (100, 64): 64, (128, 64): 64,
             (129, 128): 16, (65, 128): 128, (33, 16): 16}
    assert {key: attention.tail_block(*key) for key in cases} == cases


def test_attention_kernel_rejects_layouts_it_cannot_read():
    from lseg_encoder.kernels.attention import check_qkv

    check_qkv(torch.zeros(1, 5, 3 * 2 * 16), 2)
    with pytest.raises(ValueError, match="expected"):
        check_qkv(torch.zeros(1, 5, 100), 2)
    with pytest.raises(ValueError, match="power of two"):
        check_qkv(torch.zeros(1, 5, 3 * 2 * 24), 2)
    with pytest.raises(ValueError, match="contiguous"):
        check_qkv(torch.zeros(1, 96, 5).transpose(1, 2), 2)


KERNEL_MODEL_CHECK = textwrap.dedent("""
    import copy, torch
    from lseg_encoder.model import build_encoder
    from lseg_encoder.model.kernel_attention import KernelAttention, use_kernel_attention
    torch.manual_seed(0)
    enc = build_encoder("tiny").eval().to({device!r})
    for p in enc.parameters():
        torch.nn.init.normal_(p, std=0.05)
    swapped = copy.deepcopy(enc)
    assert use_kernel_attention(swapped) == 4
    assert all(isinstance(b.attn, KernelAttention) for b in swapped.pretrained.model.blocks)
    x = torch.rand(2, 3, 64, 96, device={device!r}) * 2 - 1
    with torch.inference_mode():
        err = (swapped(x) - enc(x)).abs().max().item()
    assert err <= (1e-5 if {device!r} == "cpu" else 2e-3), err
    print("ok")
""")


def test_kernel_attention_swap_is_the_same_model():
    run = _run_child(KERNEL_MODEL_CHECK)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_attention_default_and_refusal_off_cuda():
    from lseg_encoder.errors import LsegError
    from lseg_encoder.model import build_encoder
    from lseg_encoder.runners.compiled_runner import CompiledRunner, attention_default

    assert attention_default("fp16", "cuda") == "triton" and attention_default("bf16", "cuda:1") == "triton"
    assert attention_default("fp32", "cuda") == "auto" and attention_default("fp16", "cpu") == "auto"
    enc = build_encoder("tiny").eval()
    assert CompiledRunner(enc, "fp16", "cpu").attention == "auto"
    with pytest.raises(LsegError, match="attention='triton' runs a CUDA kernel"):
        CompiledRunner(enc, "fp16", "cpu", attention="triton")
    with pytest.raises(LsegError, match="TF32 in an fp32 graph"):
        CompiledRunner(enc, "fp32", "cuda", attention="triton")  # refused before any GPU is touched
