"""Word-free segmentation: the best word of the whole CLIP vocabulary for every pixel.

The vocabulary's text features come from `text.vocabulary` (computed once per text tower, cached on
disk). Scoring 37k pixels (384 px input) against 40k words by brute force is 1.5 TFLOP, ~25 s on two
CPU cores, so the per-pixel argmax is an exact branch-and-bound search instead:

Bound. Subtracting the words' mean m changes no pixel's argmax. In a k-dimensional principal basis
B of this image's pixel features, <p, t - m> = base_t + <coords_p, word_coords_t> + <r_p, t - m>,
where the pixel residual r_p is orthogonal to B, so the last term is bounded by
||r_p|| * ||word residual_t||. For a block of pixels, coords lie in a box [lo, hi], which bounds
every word's score on the whole block from above and below (two GEMMs for all 16x16 tiles at once).
Words whose upper bound is below the best lower bound cannot win anywhere in the block.

Search. Each tile keeps its surviving words; tiles with more than `SPLIT_CANDIDATES` are split into
quadrants, each bounded again within its parent's words. Leaf blocks score their pixels in the
k-dimensional basis with the residual as an error bar, and fall back to the full C-dimensional dot
product for any pixel whose winner the error bar cannot separate. The result therefore equals the
brute-force argmax except at ties closer than float32 rounding (`SLACK` keeps near-ties alive).
Nothing larger than (tiles of one chunk) x (words) or (block pixels) x (its candidates) is built.
On synthetic weights (tiny, 384 px, 40,579 words) this takes ~1.8 s on 2 loaded cores instead of
~25-50 s; the per-block loop runs single-threaded (see `_single_thread`).

The argmax is taken at the feature-map resolution and the label map is resized to the original
image with nearest neighbour: upsampling 40k logit maps first (as label-prompted `segment` does for
a few labels) would cost 4x or more for changes only along region borders.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .segment import label_dtype

SLACK = 1e-4  # >> float32 rounding of the bound arithmetic and of a 512-term dot product (~1e-6)
SPLIT_CANDIDATES = 1024  # a block with more candidates is split into quadrants (if it has > 4 pixels)
RESULT_SCHEMA = "lseg-encoder/segmentation/v1"


def _pixel_basis(pixels: torch.Tensor, rank: int, max_samples: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and top-`rank` principal directions (C, k) of this image's pixel features.

    Any orthonormal basis keeps the search exact (the residual is bounded per pixel); a good one
    just makes the bounds tight. A pixel subsample is enough to find it.
    """
    mean = pixels.mean(dim=0)
    step = max(1, pixels.shape[0] // max_samples)
    sample = pixels[::step] - mean
    _, vectors = torch.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
    return mean, vectors[:, -min(rank, pixels.shape[1]):].contiguous()


@dataclass
class _Search:
    """Everything one search needs. Scores are split as <p, t - m> = base_t + <coords_p, word_coords_t>
    + <r_p, t - m>, with the pixel residual r_p orthogonal to the basis, so |<r_p, .>| <=
    residual_p * word_residual_t."""

    feats: torch.Tensor          # (P, C) pixel features
    text: torch.Tensor           # (N, C) word features
    coords: torch.Tensor         # (P, k) pixel coordinates in the image's principal basis
    residual: torch.Tensor       # (P,) norm of the pixel's part outside the basis
    word_base: torch.Tensor      # (N,)
    word_coords: torch.Tensor    # (N, k)
    abs_word_coords: torch.Tensor
    word_residual: torch.Tensor  # (N,)
    out: torch.Tensor            # (P,) result

    def bounds(self, pixels: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Candidates that can still win at some pixel of the block (box bound in the basis)."""
        c = self.coords[pixels]
        lo, hi = c.amin(dim=0), c.amax(dim=0)
        centre = self.word_base[cand] + self.word_coords[cand] @ ((lo + hi) / 2)
        spread = self.abs_word_coords[cand] @ ((hi - lo) / 2) + self.word_residual[cand] * self.residual[pixels].max()
        return cand[centre + spread >= (centre - spread).max() - SLACK]

    def solve(self, block: torch.Tensor, cand: torch.Tensor) -> None:
        """Block = 2-D tensor of pixel indices, cand = words alive for the whole block."""
        h, w = block.shape
        if len(cand) > SPLIT_CANDIDATES and h * w > 4:
            for rows in block.split((h + 1) // 2, dim=0):
                for part in rows.split((w + 1) // 2, dim=1):
                    pixels = part.reshape(-1)
                    self.solve(part, self.bounds(pixels, cand))
            return
        pixels = block.reshape(-1)
        approx = self.word_base[cand] + self.coords[pixels] @ self.word_coords[cand].T  # (pixels, cand)
        err = self.residual[pixels, None] * self.word_residual[cand][None, :]
        best = approx.argmax(dim=1)
        # the k-dimensional score decides unless another word is within the error bar
        undecided = ((approx + err) >= (approx - err).amax(dim=1, keepdim=True) - SLACK).sum(dim=1) > 1
        if undecided.any():
            best[undecided] = (self.feats[pixels[undecided]] @ self.text[cand].T).argmax(dim=1)
        self.out[pixels] = cand[best]


def _tile_boxes(coords: torch.Tensor, residual: torch.Tensor, tile: int):
    """Per tile: centre and half-width of the coefficient box, and the largest residual norm."""
    h, w, k = coords.shape
    ph, pw = -h % tile, -w % tile
    if ph or pw:  # replicate the last row/column: copies of real pixels leave every bound valid
        coords = F.pad(coords.permute(2, 0, 1)[None], (0, pw, 0, ph), mode="replicate")[0].permute(1, 2, 0)
        residual = F.pad(residual[None, None], (0, pw, 0, ph), mode="replicate")[0, 0]
    th, tw = coords.shape[0] // tile, coords.shape[1] // tile
    blocks = coords.reshape(th, tile, tw, tile, k).permute(0, 2, 1, 3, 4).reshape(th * tw, tile * tile, k)
    lo, hi = blocks.amin(dim=1), blocks.amax(dim=1)
    rho = residual.reshape(th, tile, tw, tile).permute(0, 2, 1, 3).reshape(th * tw, -1).amax(dim=1)
    return (lo + hi) / 2, (hi - lo) / 2, rho, tw


@torch.inference_mode()
def vocabulary_argmax(image_features: torch.Tensor, text_features, *, tile: int = 16, rank: int = 32,
                      chunk_bytes: int = 64 << 20) -> torch.Tensor:
    """(C, h, w) pixel features, (N, C) text features -> (h, w) int64 index of the best word.

    Exact branch-and-bound (module docstring). Ties between words go to the lower index, as
    `argmax` does, up to float rounding. Peak extra memory ~ a few `chunk_bytes`.
    """
    c, h, w = image_features.shape
    feats = image_features.float().permute(1, 2, 0).reshape(h * w, c).contiguous()
    text = torch.as_tensor(np.asarray(text_features)).float()
    # <p, t> - <p, m> has the same argmax over t for every pixel p: centre the words
    centred = text - text.mean(dim=0)
    mean, basis = _pixel_basis(feats, rank)
    coords = (feats - mean) @ basis
    word_coords = centred @ basis
    search = _Search(
        feats, text, coords, (feats - mean - coords @ basis.T).norm(dim=1), centred @ mean, word_coords,
        word_coords.abs(), (centred - word_coords @ basis.T).norm(dim=1), torch.empty(h * w, dtype=torch.int64),
    )
    # first level for all tiles at once (two GEMMs), then each tile on its own
    mid, half, rho, tiles_w = _tile_boxes(coords.view(h, w, -1), search.residual.view(h, w), tile)
    grid = torch.arange(h * w).view(h, w)
    per_chunk = max(1, chunk_bytes // (4 * text.shape[0]))
    for first in range(0, mid.shape[0], per_chunk):
        sl = slice(first, first + per_chunk)
        centre = search.word_base[None, :] + mid[sl] @ word_coords.T          # (tiles, N)
        spread = half[sl] @ search.abs_word_coords.T + rho[sl, None] * search.word_residual[None, :]
        alive = (centre + spread) >= (centre - spread).amax(dim=1, keepdim=True) - SLACK
        with _single_thread():
            for j, row in enumerate(alive):
                y0, x0 = ((first + j) // tiles_w) * tile, ((first + j) % tiles_w) * tile
                search.solve(grid[y0 : y0 + tile, x0 : x0 + tile], row.nonzero().squeeze(1))
    return search.out.view(h, w)


@contextlib.contextmanager
def _single_thread():
    """The per-block ops are tiny: with several threads, barrier waits cost more than the work, and
    on a loaded machine (other processes on the cores) many times more (measured 2.6 s vs 12 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class WordFreeSegmentation:
    """`label_map[y, x]` indexes `words` (the words found, largest area first), original image size."""

    words: list[str]
    label_map: np.ndarray
    fractions: dict[str, float]
    vocabulary_size: int
    meta: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:  # same interface as segment.Segmentation, for render/JSON
        return self.words

    def to_json(self) -> dict:
        h, w = self.label_map.shape
        return {"schema": RESULT_SCHEMA, "kind": "wordfree", "image_size": [h, w],
                "vocabulary_size": self.vocabulary_size, "labels": self.words,
                "fractions": self.fractions, **self.meta}


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output position under `F.interpolate(mode="nearest")` (one axis)."""
    axis = torch.arange(n_in, dtype=torch.float32)[None, None, :, None]
    return F.interpolate(axis, size=(int(n_out), 1), mode="nearest")[0, 0, :, 0].long().numpy()


def wordfree_features(image_features: torch.Tensor, vocabulary, image_size: tuple[int, int]) -> WordFreeSegmentation:
    """One image's features (1, C, h, w) + `VocabularyEmbeddings` -> words sorted by area."""
    if image_features.dim() != 4 or image_features.shape[0] != 1:
        raise ValueError(f"expected features (1, C, h, w), got {tuple(image_features.shape)}")
    best = vocabulary_argmax(image_features[0], vocabulary.features).numpy()
    # nearest resize as index maps (exactly F.interpolate's "nearest"): the map at the image size is
    # built once, in the smallest dtype, and areas are counted on the small map with row x column
    # weights, so a 50 MP image costs 1-2 bytes per pixel instead of int64/float copies
    rows, cols = (_nearest_indices(n, m) for n, m in zip(best.shape, image_size))
    weight = np.bincount(rows, minlength=best.shape[0])[:, None] * np.bincount(cols, minlength=best.shape[1])[None]
    found, inverse = np.unique(best, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=weight.ravel()).astype(np.int64)
    order = np.argsort(-counts, kind="stable")  # largest area first; ties by vocabulary order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    small = rank[inverse].reshape(best.shape).astype(label_dtype(len(found)))
    label_map = small[rows][:, cols]
    words = [vocabulary.words[found[i]] for i in order]
    total = int(image_size[0]) * int(image_size[1])
    fractions = {word: float(counts[i]) / total for word, i in zip(words, order)}
    return WordFreeSegmentation(words, label_map, fractions, len(vocabulary.words))


def wordfree_image(runner, vocabulary, image, size) -> WordFreeSegmentation:
    """Image -> word-free segmentation with any active runner and cached vocabulary features."""
    from .preprocess import load_image, preprocess

    pil = load_image(image)
    feats = runner.infer(preprocess(pil, size, runner.config))
    return wordfree_features(feats, vocabulary, (pil.height, pil.width))
