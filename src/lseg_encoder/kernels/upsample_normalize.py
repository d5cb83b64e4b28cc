"""The decoder's last x2 upsample and the channel L2 normalisation as one Triton kernel (issue 13).

Why: the features are 512 channels at H/2 x W/2, built by upsampling head1 (H/4 x W/4) x2 and
dividing each pixel by its channel norm. Run as two kernels, the upsampled fp16 map is written and
read back once more in full: at batch 16 x 480 px that is 0.94 GB each way, 1.5 ms of the 28 ms
forward on the H100 (docs/benchmarks.md, sixth session). Inductor fuses the two only as a looped
reduction that took 3.2 ms at 910 px. This kernel reads head1 and writes the features once: each
program takes a run of output pixels of one row, interpolates in fp32 a chunk of channels at a time,
sums their squares, then interpolates the chunks again and writes value / norm in the dtype asked for.

Same maths as `normalize_channels(upsample_x2(head))` (bilinear, align_corners=True, source index
`dst * (in - 1) / (out - 1)` as PyTorch computes it), except that the upsampled values are not
rounded to fp16 before the norm: slightly closer to fp32.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl


@triton.jit
def _bilinear(head, c, cmask, y0, y1, ly, x0, x1, lx, xmask, s_c, s_y, s_x):
    """[BLOCK_C, BLOCK_X] interpolated values in fp32 (PyTorch's (1 - l) * a + l * b form)."""
    rows_c = c[:, None] * s_c
    m = cmask[:, None] & xmask[None, :]
    a = tl.load(head + rows_c + y0 * s_y + x0[None, :] * s_x, mask=m, other=0.0).to(tl.float32)
    b = tl.load(head + rows_c + y0 * s_y + x1[None, :] * s_x, mask=m, other=0.0).to(tl.float32)
    d = tl.load(head + rows_c + y1 * s_y + x0[None, :] * s_x, mask=m, other=0.0).to(tl.float32)
    e = tl.load(head + rows_c + y1 * s_y + x1[None, :] * s_x, mask=m, other=0.0).to(tl.float32)
    wx = lx[None, :]
    top = (1.0 - wx) * a + wx * b
    bottom = (1.0 - wx) * d + wx * e
    return (1.0 - ly) * top + ly * bottom


@triton.jit
def _upsample2_normalize_kernel(head, out, C, h, w, H, W, scale_y, scale_x,
                                sh_b, sh_c, sh_y, sh_x, so_b, so_c, so_y, so_x,
                                BLOCK_C: tl.constexpr, BLOCK_X: tl.constexpr, STREAM: tl.constexpr):
    row = tl.program_id(0)  # one output row (b, y) ...
    b = row // H
    y = row % H
    xs = tl.program_id(1) * BLOCK_X + tl.arange(0, BLOCK_X)  # ... and BLOCK_X of its pixels, all channels
    xmask = xs < W
    # the scales in fp32 whatever their argument type: Triton's launcher passes a Python float as fp32,
    # Inductor's (in AOTI packages) as fp64, which would make every interpolated value fp64
    fy = y.to(tl.float32) * tl.cast(scale_y, tl.float32)
    y0 = fy.to(tl.int32)  # floor: the source index is never negative
    y1 = tl.minimum(y0 + 1, h - 1)
    ly = fy - y0.to(tl.float32)
    fx = xs.to(tl.float32) * tl.cast(scale_x, tl.float32)
    x0 = fx.to(tl.int32)
    x1 = tl.minimum(x0 + 1, w - 1)
    lx = fx - x0.to(tl.float32)
    src = head + b * sh_b
    dst = out + b * so_b + y * so_y + xs[None, :] * so_x
    # two passes over channel chunks: the squares first, then the values again, divided and stored.
    # Interpolating twice re-reads head1 (an eighth of the bytes written, mostly from L2); holding all
    # channels of a tile in registers instead ran at 1.7 TB/s at batch 16 (run 15), this at 2.0 (run 34).
    sumsq = tl.zeros([BLOCK_X], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        v = _bilinear(src, c, c < C, y0, y1, ly, x0, x1, lx, xmask, sh_c, sh_y, sh_x)
        sumsq += tl.sum(v * v, axis=0)
    norm = tl.sqrt(sumsq)[None, :]
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        v = _bilinear(src, c, cmask, y0, y1, ly, x0, x1, lx, xmask, sh_c, sh_y, sh_x)
        tl.store(dst + c[:, None] * so_c, (v / norm).to(out.dtype.element_ty),
                 mask=cmask[:, None] & xmask[None, :], cache_modifier=".cs" if STREAM else "")


def _align_corners_scale(src: int, dst: int) -> float:
    return (src - 1) / (dst - 1) if dst > 1 else 0.0


# (BLOCK_C, BLOCK_X, num_warps): channels per chunk, output pixels per program and its warps. The
# fastest of eight tiles summed over 260/520/910 px and batch 16 on the H100 (run 34,
# scripts/gpu_finish_kernel.py), for the channels-last head1 that Inductor's trunk returns: 1.07 ms
# at batch 16 x 480 (fp32 features, 2.0 TB/s) against 1.48 ms for Inductor's two kernels. An NCHW
# head1 is 6-17x slower than a channels-last one (its x gathers do not vectorise).
TILE = (64, 64, 4)


def _launch(kernel, head: torch.Tensor, dtype: torch.dtype, tile: tuple[int, int, int],
            streaming: bool) -> torch.Tensor:
    if head.dim() != 4:
        raise ValueError(f"expected a (B, C, h, w) map, got shape {tuple(head.shape)}")
    b, c, h, w = head.shape
    block_c, block_x, num_warps = tile
    big_h, big_w = 2 * h, 2 * w
    out = torch.empty((b, c, big_h, big_w), dtype=dtype, device=head.device)
    grid = (b * big_h, triton.cdiv(big_w, block_x))
    kernel[grid](head, out, c, h, w, big_h, big_w,
                 _align_corners_scale(h, big_h), _align_corners_scale(w, big_w),
                 *head.stride(), *out.stride(), BLOCK_C=block_c, BLOCK_X=block_x, STREAM=streaming,
                 num_warps=num_warps)
    return out


def upsample2_normalize(head: torch.Tensor, dtype: torch.dtype = torch.float32, *,
                        tile: tuple[int, int, int] | None = None, streaming: bool = True) -> torch.Tensor:
    """(B, C, h, w) head1 in any float dtype and layout -> (B, C, 2h, 2w) unit features in `dtype`,
    contiguous NCHW, in memory the caller owns. `tile` overrides `TILE` (fixed, not autotuned: a
    tuning pass would run inside the timed warm-up). `streaming` marks the stores evict-first
    (`.cs`): the features are written once and not read here, head1 is what L2 should keep.

    A plain launch, for eager callers (the compiled runner's finish after its CUDA graph): no
    dispatcher in front of it. Graphs that must contain the kernel call `upsample2_normalize_op`.

    Launched with `head`'s device current: Triton launches on the current device's stream and refuses
    pointers of another device ("cannot be accessed from Triton"), which broke runners on cuda:1 and so
    `extract --devices all` (run 86). Inductor's compiled graphs guard their own device."""
    with torch.cuda.device(head.device) if head.is_cuda else contextlib.nullcontext():
        return _launch(_upsample2_normalize_kernel, head, dtype, tile or TILE, streaming)


# `triton_op`: torch.export records it as one node and AOTInductor compiles the kernel into the
# package (graph revision 8), so the C++ runner writes the features with the same kernel as Python.
@torch.library.triton_op("lseg::upsample2_normalize", mutates_args=())
def _upsample2_normalize_op(head: torch.Tensor, dtype: torch.dtype, block_c: int, block_x: int,
                            num_warps: int, streaming: bool) -> torch.Tensor:
    return _launch(torch.library.wrap_triton(_upsample2_normalize_kernel), head, dtype,
                   (block_c, block_x, num_warps), streaming)


def upsample2_normalize_op(head: torch.Tensor, dtype: torch.dtype = torch.float32, *,
                           tile: tuple[int, int, int] | None = None) -> torch.Tensor:
    """`upsample2_normalize` as the op `lseg::upsample2_normalize` (evict-first stores), for graphs
    that torch.export or Inductor compile."""
    return _upsample2_normalize_op(head, dtype, *(tile or TILE), True)
