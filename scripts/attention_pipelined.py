"""Experiment (issue 13, eleventh session, measured, not shipped): `kernels/attention.py` with the
next key block's scores issued before the current block's softmax.

Result on the H100 (run 51, docs/benchmarks.md eleventh session), tile (64, 64, 4, 3) against the
shipped kernel in the same process: 1.2 / 2.9 % faster at 260 / 390 px, 0.1-12 % slower from 520 px
up and 4.6 % slower at batch 16 x 480 (173.37 against 165.80 us); the batch-16 forward 27.177 ms
against 27.020 / 26.862. The register cost outweighs the overlap wherever attention matters.

Why: Nsight Compute (run 44) found the shipped kernel latency-bound at batch 16 x 480 px: 25 %
occupancy at 123 registers, 53 % of issue slots busy. Its loop waits for the QK^T wgmma, then runs
the softmax (about 200 ALU and MUFU instructions a thread) while that warpgroup's tensor-core work
is idle; only the other 3 blocks on the SM fill the gap. Here the scores of block j + 1 are issued
as an asynchronous wgmma before the softmax of block j (FlashAttention-3's intra-warpgroup overlap,
written as a rotated loop). Compiled for sm_90 on the CPU (Triton 3.9), ptxas interleaves half of
the block's exponentials with the next QK^T wgmma; the price is 164 registers instead of 125, so 3
blocks an SM instead of 4. Only a measurement tells which wins.

Same maths, layouts and ragged key tail as the shipped kernel (`online_softmax_step`, `tail_block`);
it needs at least one full key block (N >= BLOCK_N), which every ViT size has. Timed by
`scripts/gpu_attention_kernel.py --kernels shipped pipelined`, which checks every tile against fp32
attention first, and in the model by `scripts/gpu_levers.py --variants base,pipelined-attn`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lseg_encoder.kernels.attention import LOG2E, TILE, _scores_block, check_qkv, online_softmax_step, tail_block


@triton.jit
def _pipelined_attention_kernel(qkv, out, n_tokens, heads, width, stride_b, stride_n, out_stride_b, out_stride_n,
                                qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                TAIL_N: tl.constexpr):
    qk_scale = tl.cast(qk_scale, tl.float32)  # fp32 whatever the launcher passes (see kernels/attention.py)
    block = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    base = qkv + b.to(tl.int64) * stride_b + h * HEAD_DIM
    offs_m = block * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = offs_m < n_tokens
    q = tl.load(base + offs_m[:, None] * stride_n + offs_d[None, :], mask=rows[:, None], other=0.0)
    offs_n = tl.arange(0, BLOCK_N)
    k_ptrs = base + width + offs_n[:, None] * stride_n + offs_d[None, :]
    v_ptrs = base + 2 * width + offs_n[:, None] * stride_n + offs_d[None, :]
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full = (n_tokens // BLOCK_N) * BLOCK_N
    qk = tl.dot(q, tl.trans(tl.load(k_ptrs)))  # block 0's scores ahead of the loop
    for start in range(0, full - BLOCK_N, BLOCK_N):
        qk_next = tl.dot(q, tl.trans(tl.load(k_ptrs + (start + BLOCK_N) * stride_n)))
        m_i, l_i, acc = online_softmax_step(qk, tl.load(v_ptrs + start * stride_n), m_i, l_i, acc, qk_scale)
        qk = qk_next
    m_i, l_i, acc = online_softmax_step(qk, tl.load(v_ptrs + (full - BLOCK_N) * stride_n), m_i, l_i, acc, qk_scale)
    if full < n_tokens:  # the ragged tail as in the shipped kernel
        offs_t = tl.arange(0, TAIL_N)
        kt_ptrs = base + width + offs_t[:, None] * stride_n + offs_d[None, :]
        vt_ptrs = base + 2 * width + offs_t[:, None] * stride_n + offs_d[None, :]
        m_i, l_i, acc = _scores_block(q, kt_ptrs, vt_ptrs, m_i, l_i, acc, stride_n, full, n_tokens, qk_scale,
                                      TAIL_N, True, True)
    acc = acc / l_i[:, None]
    dst = out + b.to(tl.int64) * out_stride_b + h * HEAD_DIM + offs_m[:, None] * out_stride_n + offs_d[None, :]
    tl.store(dst, acc.to(out.dtype.element_ty), mask=rows[:, None])


def _launch(qkv: torch.Tensor, heads: int, tile: tuple[int, int, int, int]) -> torch.Tensor:
    b, n, three_c = qkv.shape
    width = three_c // 3
    head_dim = width // heads
    block_m, block_n, num_warps, num_stages = tile
    if n < block_n:
        raise ValueError(f"{n} tokens: the rotated loop needs at least one full block of {block_n} keys")
    out = torch.empty((b, n, width), dtype=qkv.dtype, device=qkv.device)
    grid = (triton.cdiv(n, block_m), b * heads)
    torch.library.wrap_triton(_pipelined_attention_kernel)[grid](
        qkv, out, n, heads, width, qkv.stride(0), qkv.stride(1), out.stride(0), out.stride(1),
        head_dim ** -0.5 * LOG2E, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
        TAIL_N=tail_block(n, block_n), num_warps=num_warps, num_stages=num_stages)
    return out


@torch.library.triton_op("lseg_experiment::attention_pipelined", mutates_args=())
def _pipelined_attention_op(qkv: torch.Tensor, heads: int, block_m: int, block_n: int, num_warps: int,
                            num_stages: int) -> torch.Tensor:
    return _launch(qkv, heads, (block_m, block_n, num_warps, num_stages))


def pipelined_attention_from_qkv(qkv: torch.Tensor, heads: int, *,
                                 tile: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(B, N, 3C) -> (B, N, C), as `kernels.attention.attention_from_qkv`."""
    check_qkv(qkv, heads)
    return _pipelined_attention_op(qkv, heads, *(tile or TILE))
