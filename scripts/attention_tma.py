"""Experiment (issue 13, measured, not shipped): `kernels/attention.py` with every q, k, v load and the
output store through Hopper's tensor memory accelerator (TMA descriptors).

Result on the H100 (run 42, docs/benchmarks.md tenth session). Alone, against the shipped kernel,
it is 1.4 % faster at batch 16 and 2.6-5.1 % at 520 / 780 px, but 2-13 % slower at 260, 650 and
910 px. As the op `lseg_experiment::attention_tma` inside a compiled graph, torch 2.11's Inductor
cannot read the descriptors' metadata (`KeyError: 'q_desc'` in `triton_kernel_wrap`), assumes
every input mutated, and the graph gives wrong features. So it stays here.

Why: at batch 16 x 480 px the shipped kernel runs at about 280-300 TFLOP/s (4.5 of the 27 ms forward,
docs/benchmarks.md ninth session), where FlashAttention-3 reports more than 500 on Hopper at head
dim 64; GEMMs and convs already run at 610-735. Its loads are pointer gathers that Triton pipelines
with cp.async; a descriptor load is one TMA copy per block, with no address arithmetic in registers,
and the seventh session's sweep found its larger tiles (128 queries) slower, which is where TMA
usually pays. Same maths and layouts as the shipped kernel: q, k and v are read where the qkv GEMM
wrote them, `(B, N, 3 * heads * 64)`, through 3-D descriptors over (B, N, 3C), so a block that runs
past an image's N tokens is zero-filled by the hardware (no row of the next image); the ragged last
key block (16-32 keys, `attention.tail_block`) is masked as before, and the output store is clipped
to N by the descriptor.

Host-side descriptors (`triton.tools.tensor_descriptor.TensorDescriptor`): no device scratch
allocator is needed. Timed by `scripts/gpu_attention_kernel.py --kernels shipped tma` (`bash
scripts/gpu_call_tenth.sh tail-tma`), which checks every tile against fp32 attention before
timing it. Checked on the CPU too (2026-11-26, Triton 3.9; the GPU machine has 3.6): in Triton's
interpreter it gives the shipped kernel's results to the bit on four shapes with ragged tails, and
compiled for sm_90 at (64, 64, 4, 3) it issues TMA copies (`cp.async.bulk.tensor`) where the shipped
kernel issues `cp.async` (both 3-stage pipelined, 57 KB of shared memory, 16 wgmma per key block).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from lseg_encoder.kernels.attention import LOG2E, TILE, check_qkv, online_softmax_step, tail_block


@triton.jit
def _tma_block(q, kv_desc, m_i, l_i, acc, b, start, k_col, v_col, n_tokens, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr):
    """One block of keys through the descriptor: the running max, denominator and accumulator."""
    k = kv_desc.load([b, start, k_col]).reshape(BLOCK_N, HEAD_DIM)
    v = kv_desc.load([b, start, v_col]).reshape(BLOCK_N, HEAD_DIM)
    qk = tl.dot(q, tl.trans(k))
    if MASKED:  # rows past N were zero-filled; their scores must not count
        keep = start + tl.arange(0, BLOCK_N) < n_tokens
        qk = tl.where(keep[None, :], qk, float("-inf"))
    return online_softmax_step(qk, v, m_i, l_i, acc, qk_scale)


@triton.jit
def _tma_attention_kernel(q_desc, kv_desc, tail_desc, o_desc, n_tokens, heads, width, qk_scale,
                          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          TAIL_N: tl.constexpr):
    qk_scale = tl.cast(qk_scale, tl.float32)  # fp32 whatever the launcher passes (see kernels/attention.py)
    block = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    start_m = block * BLOCK_M
    q_col = h * HEAD_DIM
    q = q_desc.load([b, start_m, q_col]).reshape(BLOCK_M, HEAD_DIM)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full = (n_tokens // BLOCK_N) * BLOCK_N
    for start in range(0, full, BLOCK_N):
        m_i, l_i, acc = _tma_block(q, kv_desc, m_i, l_i, acc, b, start, width + q_col, 2 * width + q_col,
                                   n_tokens, qk_scale, HEAD_DIM, BLOCK_N, False)
    if full < n_tokens:  # the ragged tail through a descriptor of TAIL_N keys (`attention.tail_block`)
        m_i, l_i, acc = _tma_block(q, tail_desc, m_i, l_i, acc, b, full, width + q_col, 2 * width + q_col,
                                   n_tokens, qk_scale, HEAD_DIM, TAIL_N, True)
    acc = acc / l_i[:, None]
    o_desc.store([b, start_m, q_col], acc.to(q.dtype).reshape(1, BLOCK_M, HEAD_DIM))


def _launch(qkv: torch.Tensor, heads: int, tile: tuple[int, int, int, int]) -> torch.Tensor:
    b, n, three_c = qkv.shape
    width = three_c // 3
    head_dim = width // heads
    block_m, block_n, num_warps, num_stages = tile
    tail_n = tail_block(n, block_n)
    out = torch.empty((b, n, width), dtype=qkv.dtype, device=qkv.device)
    q_desc = TensorDescriptor.from_tensor(qkv, [1, block_m, head_dim])
    kv_desc = TensorDescriptor.from_tensor(qkv, [1, block_n, head_dim])
    tail_desc = TensorDescriptor.from_tensor(qkv, [1, tail_n, head_dim])
    o_desc = TensorDescriptor.from_tensor(out, [1, block_m, head_dim])
    grid = (triton.cdiv(n, block_m), b * heads)
    torch.library.wrap_triton(_tma_attention_kernel)[grid](
        q_desc, kv_desc, tail_desc, o_desc, n, heads, width, head_dim ** -0.5 * LOG2E, HEAD_DIM=head_dim,
        BLOCK_M=block_m, BLOCK_N=block_n, TAIL_N=tail_n, num_warps=num_warps, num_stages=num_stages)
    return out


# as `lseg::attention`: Inductor compiles it into the graph (its stable-TMA support makes the descriptors)
@torch.library.triton_op("lseg_experiment::attention_tma", mutates_args=())
def _tma_attention_op(qkv: torch.Tensor, heads: int, block_m: int, block_n: int, num_warps: int,
                      num_stages: int) -> torch.Tensor:
    return _launch(qkv, heads, (block_m, block_n, num_warps, num_stages))


def tma_attention_from_qkv(qkv: torch.Tensor, heads: int, *,
                           tile: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(B, N, 3C) -> (B, N, C), as `kernels.attention.attention_from_qkv`; `tile` is
    (BLOCK_M, BLOCK_N, num_warps, num_stages), the shipped kernel's by default."""
    check_qkv(qkv, heads)
    return _tma_attention_op(qkv, heads, *(tile or TILE))
