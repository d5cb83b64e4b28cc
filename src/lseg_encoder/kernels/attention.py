"""ViT self-attention straight from the qkv GEMM's output, as one Triton kernel (issue 13).

Why: in the compiled fp16 path attention is cuDNN's fused SDPA. On the H100 it runs at ~260 TFLOP/s
at batch 16 x 480 px (901 tokens, 16 heads of 64): 4.8 of the 27 ms forward, the slowest of the
big kernels per FLOP. PyTorch's cuDNN wrapper also zero-fills a dropout seed and offset before
every call, dropout 0 included: a memset graph node and a ~3 us gap per layer, ~0.1 ms per forward
at 260 px (docs/benchmarks.md, sixth session). FlashAttention-2, memory-efficient SDPA and
FlexAttention were each slower than cuDNN. This kernel is the remaining lever the issue names: a
flash-attention forward (online softmax in fp32, exp2, scores never leave registers) specialised
for what the ViT needs: no mask, no dropout, no causal branch, and it reads q, k and v where the
qkv Linear wrote them, `(B, N, 3, heads, 64)`, and writes `(B, N, heads * 64)`, the layout the
proj Linear reads. So no permute, no memset, one launch per layer. Measured on the H100 (runs
22-27, docs/benchmarks.md seventh session): 1.02-1.68x cuDNN's speed per call from 257 to 3137
tokens; the whole forward 0.3-7.4 % faster at 260-910 px and 0.6-1.3 % at batch 16 x 480 px
(within the spread there), fidelity unchanged.

Same maths as `F.scaled_dot_product_attention(q, k, v)` with the default scale; the softmax
weights are rounded to the activation dtype before the PV product, as every fused kernel does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _scores_block(q, k_ptrs, v_ptrs, m_i, l_i, acc, stride_n, start, n_tokens, qk_scale,
                  BLOCK_N: tl.constexpr, MASKED: tl.constexpr, RAW_MAX: tl.constexpr):
    """One block of keys: the running max, denominator and accumulator after it. (Rescaling the
    accumulator only when a row's max grows by more than 2^8, as some kernels do, was 0-27 % slower
    here at every shape: run 24.)"""
    offs_n = start + tl.arange(0, BLOCK_N)
    if MASKED:
        keep = offs_n < n_tokens
        k = tl.load(k_ptrs + start * stride_n, mask=keep[:, None], other=0.0)
        v = tl.load(v_ptrs + start * stride_n, mask=keep[:, None], other=0.0)
    else:
        k = tl.load(k_ptrs + start * stride_n)
        v = tl.load(v_ptrs + start * stride_n)
    qk = tl.dot(q, tl.trans(k))  # raw scores: `online_softmax_step` scales them (qk_scale is fp32, see the kernel)
    if MASKED:
        qk = tl.where(keep[None, :], qk, float("-inf"))
    return online_softmax_step(qk, v, m_i, l_i, acc, qk_scale, RAW_MAX)


@triton.jit
def online_softmax_step(qk, v, m_i, l_i, acc, qk_scale, RAW_MAX: tl.constexpr = True):
    """Raw scores q.k of one key block (-inf where masked) and its values -> the running max,
    denominator and accumulator after it, in the log2 domain (`qk_scale` includes log2(e)). Shared
    with experiments that load the blocks another way.

    RAW_MAX: the row max of the raw scores, times the scale, instead of the max of the scaled scores.
    The two are equal to the bit (the scale is positive and rounding is monotone), but the scores
    are then scaled only inside the exponent's fused multiply-add: 32 multiplies fewer per thread and
    key block, a tenth of the loop's instructions (sm_90 SASS, 322 -> 292). On the H100 (runs 51, 53,
    56; docs/benchmarks.md eleventh session) the kernel alone is 1.6-4.4 % faster from 520 to 910 px
    (within 1 % below that, and at batch 16 within its spread), the batch-16 forward 0.5-1.0 %.

    (The denominator as a tensor-core product of the weights with ones, 20 instructions fewer, was
    0.8-1.5 % slower at batch 16 and up to 20 % slower alone: run 52, commit bcff58d.)"""
    if RAW_MAX:
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    else:
        qk = qk * qk_scale
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        qk_scale = 1.0
    p = tl.math.exp2(qk * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_new, l_i, acc


@triton.jit
def query_block(qkv, n_tokens, heads, width, stride_b, stride_n, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr):
    """This program's image and head, its BLOCK_M queries, the first key and value block's pointers
    and the fresh softmax state. Shared with experiments that run the key loop another way."""
    block = tl.program_id(0)  # BLOCK_M queries ...
    bh = tl.program_id(1)     # ... of one image's head
    b = bh // heads
    h = bh % heads
    base = qkv + b.to(tl.int64) * stride_b + h * HEAD_DIM  # q at +0, k at +width, v at +2 * width
    offs_m = block * BLOCK_M + tl.arange(0, BLOCK_M)
    rows = offs_m < n_tokens
    q = tl.load(base + offs_m[:, None] * stride_n + tl.arange(0, HEAD_DIM)[None, :], mask=rows[:, None], other=0.0)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    # (written as base + width + offsets: `(base + offsets) + width` costs 5 registers on sm_90)
    k_ptrs = base + width + offs_n[:, None] * stride_n + offs_d[None, :]
    v_ptrs = base + 2 * width + offs_n[:, None] * stride_n + offs_d[None, :]
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    return b, h, base, offs_m, rows, q, k_ptrs, v_ptrs, m_i, l_i, acc


@triton.jit
def finish_rows(q, base, b, h, offs_m, rows, m_i, l_i, acc, out, n_tokens, width, stride_n, out_stride_b,
                out_stride_n, qk_scale, full, HEAD_DIM: tl.constexpr, TAIL_N: tl.constexpr,
                RAW_MAX: tl.constexpr):
    """The ragged tail of keys past `full` in one block of TAIL_N (see `tail_block`), then the
    normalised rows stored where proj reads them."""
    offs_d = tl.arange(0, HEAD_DIM)
    if full < n_tokens:
        offs_t = tl.arange(0, TAIL_N)
        kt_ptrs = base + width + offs_t[:, None] * stride_n + offs_d[None, :]
        vt_ptrs = base + 2 * width + offs_t[:, None] * stride_n + offs_d[None, :]
        m_i, l_i, acc = _scores_block(q, kt_ptrs, vt_ptrs, m_i, l_i, acc, stride_n, full, n_tokens, qk_scale,
                                      TAIL_N, True, RAW_MAX)
    acc = acc / l_i[:, None]
    dst = out + b.to(tl.int64) * out_stride_b + h * HEAD_DIM + offs_m[:, None] * out_stride_n + offs_d[None, :]
    tl.store(dst, acc.to(out.dtype.element_ty), mask=rows[:, None])


@triton.jit
def _attention_kernel(qkv, out, n_tokens, heads, width, stride_b, stride_n, out_stride_b, out_stride_n,
                      qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      TAIL_N: tl.constexpr, RAW_MAX: tl.constexpr):
    # Inductor passes a Python float as fp64 (run 25): in fp64 the whole softmax, and `tl.dot` with an
    # fp64 accumulator fails to compile
    qk_scale = tl.cast(qk_scale, tl.float32)
    b, h, base, offs_m, rows, q, k_ptrs, v_ptrs, m_i, l_i, acc = query_block(
        qkv, n_tokens, heads, width, stride_b, stride_n, HEAD_DIM, BLOCK_M, BLOCK_N)
    full = (n_tokens // BLOCK_N) * BLOCK_N  # unmasked blocks first, the ragged tail once
    for start in range(0, full, BLOCK_N):
        m_i, l_i, acc = _scores_block(q, k_ptrs, v_ptrs, m_i, l_i, acc, stride_n, start, n_tokens, qk_scale,
                                      BLOCK_N, False, RAW_MAX)
    finish_rows(q, base, b, h, offs_m, rows, m_i, l_i, acc, out, n_tokens, width, stride_n, out_stride_b,
                out_stride_n, qk_scale, full, HEAD_DIM, TAIL_N, RAW_MAX)


# (BLOCK_M, BLOCK_N, num_warps, num_stages): the fastest of 14 tiles on the H100 at 257-3137 tokens
# and batch 16 x 901, or within 1.2 % of it (run 22, scripts/gpu_attention_kernel.py, docs/benchmarks.md
# seventh session); `tile=` overrides it per call.
TILE = (64, 64, 4, 3)
# The ragged last key block in a narrower block (`tail_block`); False: a full BLOCK_N block, masked,
# as before the tenth session (experiments switch it to compare the two in one process).
NARROW_TAIL = True
# The row max from the raw scores (`online_softmax_step`); False: from the scaled scores, as before the
# eleventh session (experiments switch it to compare the two in one process).
RAW_MAX = True


def tail_block(n_tokens: int, block_n: int) -> int:
    """Keys in the masked last block: the remainder rounded up to a power of two, at least 16 (the
    smallest tensor-core step), at most `block_n`. Why: every seed size has (s/16)^2 + 1 tokens, a
    multiple of 64 plus the class token, so a full tail block is 63/64 padding (15 % of the key work
    at 260 px, 5 % at 480 px's 901 tokens), and 16 keys cost a quarter of it. On the H100 the kernel
    became 2-8 % faster at the six sizes and 4 % at batch 16 (docs/benchmarks.md, tenth session)."""
    rest = n_tokens % block_n
    if not NARROW_TAIL or rest == 0:
        return block_n
    return min(block_n, max(16, triton.next_power_of_2(rest)))


def launch(qkv: torch.Tensor, heads: int, tile: tuple[int, int, int, int], kernel=_attention_kernel) -> torch.Tensor:
    """`kernel`: the shipped one, or an experiment with the same arguments."""
    b, n, three_c = qkv.shape
    width = three_c // 3
    head_dim = width // heads
    out = torch.empty((b, n, width), dtype=qkv.dtype, device=qkv.device)
    block_m, block_n, num_warps, num_stages = tile
    grid = (triton.cdiv(n, block_m), b * heads)
    torch.library.wrap_triton(kernel)[grid](
        qkv, out, n, heads, width, qkv.stride(0), qkv.stride(1), out.stride(0), out.stride(1),
        head_dim ** -0.5 * LOG2E, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
        TAIL_N=tail_block(n, block_n), RAW_MAX=RAW_MAX, num_warps=num_warps, num_stages=num_stages)
    return out


# `triton_op`: Inductor compiles the kernel itself, inside the compiled graph and its CUDA graph, and
# AOTInductor puts it into the packages the C++ runner loads.
@torch.library.triton_op("lseg::attention", mutates_args=())
def _attention_op(qkv: torch.Tensor, heads: int, block_m: int, block_n: int, num_warps: int,
                  num_stages: int) -> torch.Tensor:
    return launch(qkv, heads, (block_m, block_n, num_warps, num_stages))


def check_qkv(qkv: torch.Tensor, heads: int) -> None:
    """The layout the kernel reads: (B, N, 3 * heads * d) with unit stride along the channels."""
    if qkv.dim() != 3 or qkv.shape[2] % (3 * heads):
        raise ValueError(f"expected (B, N, 3 * heads * head_dim) with {heads} heads, got {tuple(qkv.shape)}")
    head_dim = qkv.shape[2] // (3 * heads)
    if head_dim < 16 or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim {head_dim}: the kernel needs a power of two >= 16")
    if qkv.stride(2) != 1:
        raise ValueError("the qkv channels must be contiguous")


def attention_from_qkv(qkv: torch.Tensor, heads: int, *, tile: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(B, N, 3C) output of the qkv Linear -> (B, N, C) attention output, heads side by side (what
    `sdpa(q, k, v).transpose(1, 2).reshape(B, N, C)` returns), as the op `lseg::attention`."""
    check_qkv(qkv, heads)
    return _attention_op(qkv, heads, *(tile or TILE))
