"""Experiment for issue 13 (twelfth session): the finish kernel in one pass, its norms from neighbour dot products.

Why: `kernels/upsample_normalize.py` interpolates every output value twice, once to sum the squares
for the pixel's norm and once to write value / norm, because holding all 512 channels of a tile in
registers was slower (run 15). Bilinear interpolation is linear, so the squared norm of an output
pixel v = wa a + wb b + wd d + we e (a, b, d, e its four head1 corners) is a quadratic form in the
weights over the corners' dot products. A small kernel first computes, per head1 pixel, its dot
products with itself and with its right, lower and lower-right neighbours, and that of the right
with the lower neighbour (5 fp32 values; clamped at the edges the way the corners are). The finish
then needs one pass: the norm from at most 9 gathered values, then interpolate, divide and store.
On the H100 at batch 16 x 480 px the two-pass kernel takes ~1.1 ms with fp32 features (2.0 TB/s);
writing them once is 0.64 ms at the DRAM's peak.

What it showed (run 70, docs/benchmarks.md twelfth session): 1.3 % faster alone at batch 16 with fp32
features, slower everywhere else (the extra launch and the gathers cost more than the second
interpolation), and no change in the model. The kernel is bound by its stores, so it stays an experiment.

Numerics: the same as the two-pass kernel where neighbouring head1 vectors do not nearly cancel
(|v| much smaller than its corners), which is where rounding in the quadratic form would show.

    from finish_gram import upsample2_normalize_gram   # scripts/ on sys.path
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lseg_encoder.kernels.upsample_normalize import TILE, _align_corners_scale, _bilinear


@triton.jit
def _neighbour_gram_kernel(head, gram, C, h, w, sh_b, sh_c, sh_y, sh_x,
                           BLOCK_C: tl.constexpr, BLOCK_X: tl.constexpr):
    """gram[b, y, x] = (<p,p>, <p,r>, <p,d>, <p,e>, <r,d>) for p = head1[b, :, y, x], r its right, d its
    lower and e its lower-right neighbour (indices clamped to the map, as the interpolation's are)."""
    row = tl.program_id(0)  # one head1 row (b, y)
    b = row // h
    y = row % h
    xs = tl.program_id(1) * BLOCK_X + tl.arange(0, BLOCK_X)
    xmask = xs < w
    xr = tl.minimum(xs + 1, w - 1)
    yd = tl.minimum(y + 1, h - 1)
    src = head + b * sh_b
    g0 = tl.zeros([BLOCK_X], dtype=tl.float32)
    gx = tl.zeros([BLOCK_X], dtype=tl.float32)
    gy = tl.zeros([BLOCK_X], dtype=tl.float32)
    gd = tl.zeros([BLOCK_X], dtype=tl.float32)
    ga = tl.zeros([BLOCK_X], dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        rows = c[:, None] * sh_c
        m = (c < C)[:, None] & xmask[None, :]
        p = tl.load(src + rows + y * sh_y + xs[None, :] * sh_x, mask=m, other=0.0).to(tl.float32)
        r = tl.load(src + rows + y * sh_y + xr[None, :] * sh_x, mask=m, other=0.0).to(tl.float32)
        d = tl.load(src + rows + yd * sh_y + xs[None, :] * sh_x, mask=m, other=0.0).to(tl.float32)
        e = tl.load(src + rows + yd * sh_y + xr[None, :] * sh_x, mask=m, other=0.0).to(tl.float32)
        g0 += tl.sum(p * p, axis=0)
        gx += tl.sum(p * r, axis=0)
        gy += tl.sum(p * d, axis=0)
        gd += tl.sum(p * e, axis=0)
        ga += tl.sum(r * d, axis=0)
    dst = gram + (row * w + xs) * 5
    tl.store(dst, g0, mask=xmask)
    tl.store(dst + 1, gx, mask=xmask)
    tl.store(dst + 2, gy, mask=xmask)
    tl.store(dst + 3, gd, mask=xmask)
    tl.store(dst + 4, ga, mask=xmask)


@triton.jit
def _finish_one_pass_kernel(head, gram, out, C, h, w, H, W, scale_y, scale_x,
                            sh_b, sh_c, sh_y, sh_x, so_b, so_c, so_y, so_x,
                            BLOCK_C: tl.constexpr, BLOCK_X: tl.constexpr, STREAM: tl.constexpr):
    row = tl.program_id(0)  # one output row (b, y) and BLOCK_X of its pixels, all channels
    b = row // H
    y = row % H
    xs = tl.program_id(1) * BLOCK_X + tl.arange(0, BLOCK_X)
    xmask = xs < W
    fy = y.to(tl.float32) * tl.cast(scale_y, tl.float32)
    y0 = fy.to(tl.int32)
    y1 = tl.minimum(y0 + 1, h - 1)
    ly = fy - y0.to(tl.float32)
    fx = xs.to(tl.float32) * tl.cast(scale_x, tl.float32)
    x0 = fx.to(tl.int32)
    x1 = tl.minimum(x0 + 1, w - 1)
    lx = fx - x0.to(tl.float32)
    # the squared norm of wa a + wb b + wd d + we e from the corners' dot products
    g = gram + b * h * w * 5
    at_a = g + (y0 * w + x0) * 5
    at_b = g + (y0 * w + x1) * 5
    at_d = g + (y1 * w + x0) * 5
    at_e = g + (y1 * w + x1) * 5
    wa = (1.0 - ly) * (1.0 - lx)
    wb = (1.0 - ly) * lx
    wd = ly * (1.0 - lx)
    we = ly * lx
    sq = wa * wa * tl.load(at_a, mask=xmask, other=1.0) + wb * wb * tl.load(at_b, mask=xmask, other=0.0)
    sq += wd * wd * tl.load(at_d, mask=xmask, other=0.0) + we * we * tl.load(at_e, mask=xmask, other=0.0)
    cross = wa * wb * tl.load(at_a + 1, mask=xmask, other=0.0) + wa * wd * tl.load(at_a + 2, mask=xmask, other=0.0)
    cross += wa * we * tl.load(at_a + 3, mask=xmask, other=0.0) + wb * wd * tl.load(at_a + 4, mask=xmask, other=0.0)
    cross += wb * we * tl.load(at_b + 2, mask=xmask, other=0.0) + wd * we * tl.load(at_d + 1, mask=xmask, other=0.0)
    norm = tl.sqrt(tl.maximum(sq + 2.0 * cross, 0.0))[None, :]
    src = head + b * sh_b
    dst = out + b * so_b + y * so_y + xs[None, :] * so_x
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        v = _bilinear(src, c, cmask, y0, y1, ly, x0, x1, lx, xmask, sh_c, sh_y, sh_x)
        tl.store(dst + c[:, None] * so_c, (v / norm).to(out.dtype.element_ty),
                 mask=cmask[:, None] & xmask[None, :], cache_modifier=".cs" if STREAM else "")


GRAM_TILE = (64, 64, 4)  # (BLOCK_C, BLOCK_X, num_warps) of the dot-product kernel


def upsample2_normalize_gram(head: torch.Tensor, dtype: torch.dtype = torch.float32, *,
                             tile: tuple[int, int, int] | None = None, streaming: bool = True) -> torch.Tensor:
    """`kernels.upsample_normalize.upsample2_normalize` as the two kernels above."""
    if head.dim() != 4:
        raise ValueError(f"expected a (B, C, h, w) map, got shape {tuple(head.shape)}")
    b, c, h, w = head.shape
    block_c, block_x, num_warps = tile or TILE
    gram = torch.empty((b, h, w, 5), dtype=torch.float32, device=head.device)
    gc, gx, gw = GRAM_TILE
    _neighbour_gram_kernel[(b * h, triton.cdiv(w, gx))](head, gram, c, h, w, *head.stride(),
                                                         BLOCK_C=gc, BLOCK_X=gx, num_warps=gw)
    big_h, big_w = 2 * h, 2 * w
    out = torch.empty((b, c, big_h, big_w), dtype=dtype, device=head.device)
    grid = (b * big_h, triton.cdiv(big_w, block_x))
    _finish_one_pass_kernel[grid](head, gram, out, c, h, w, big_h, big_w,
                                  _align_corners_scale(h, big_h), _align_corners_scale(w, big_w),
                                  *head.stride(), *out.stride(), BLOCK_C=block_c, BLOCK_X=block_x,
                                  STREAM=streaming, num_warps=num_warps)
    return out
