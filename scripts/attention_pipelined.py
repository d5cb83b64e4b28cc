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

from lseg_encoder.kernels.attention import TILE, check_qkv, finish_rows, launch, online_softmax_step, query_block


@triton.jit
def _pipelined_attention_kernel(qkv, out, n_tokens, heads, width, stride_b, stride_n, out_stride_b, out_stride_n,
                                qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                TAIL_N: tl.constexpr, RAW_MAX: tl.constexpr):
    qk_scale = tl.cast(qk_scale, tl.float32)  # fp32 whatever the launcher passes (see kernels/attention.py)
    b, h, base, offs_m, rows, q, k_ptrs, v_ptrs, m_i, l_i, acc = query_block(
        qkv, n_tokens, heads, width, stride_b, stride_n, HEAD_DIM, BLOCK_M, BLOCK_N)
    full = (n_tokens // BLOCK_N) * BLOCK_N
    qk = tl.dot(q, tl.trans(tl.load(k_ptrs)))  # block 0's scores ahead of the loop
    for start in range(0, full - BLOCK_N, BLOCK_N):
        qk_next = tl.dot(q, tl.trans(tl.load(k_ptrs + (start + BLOCK_N) * stride_n)))
        m_i, l_i, acc = online_softmax_step(qk, tl.load(v_ptrs + start * stride_n), m_i, l_i, acc, qk_scale,
                                            RAW_MAX)
        qk = qk_next
    m_i, l_i, acc = online_softmax_step(qk, tl.load(v_ptrs + (full - BLOCK_N) * stride_n), m_i, l_i, acc, qk_scale,
                                        RAW_MAX)
    finish_rows(q, base, b, h, offs_m, rows, m_i, l_i, acc, out, n_tokens, width, stride_n, out_stride_b,
                out_stride_n, qk_scale, full, HEAD_DIM, TAIL_N, RAW_MAX)


@torch.library.triton_op("lseg_experiment::attention_pipelined", mutates_args=())
def _pipelined_attention_op(qkv: torch.Tensor, heads: int, block_m: int, block_n: int, num_warps: int,
                            num_stages: int) -> torch.Tensor:
    if qkv.shape[1] < block_n:
        raise ValueError(f"{qkv.shape[1]} tokens: the rotated loop needs at least one full block of {block_n} keys")
    return launch(qkv, heads, (block_m, block_n, num_warps, num_stages), _pipelined_attention_kernel)


def pipelined_attention_from_qkv(qkv: torch.Tensor, heads: int, *,
                                 tile: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(B, N, 3C) -> (B, N, C), as `kernels.attention.attention_from_qkv`."""
    check_qkv(qkv, heads)
    return _pipelined_attention_op(qkv, heads, *(tile or TILE))
