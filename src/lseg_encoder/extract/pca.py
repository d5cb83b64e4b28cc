"""`--pca K`: a K-d basis of the 512-d features, fitted once per out folder, stored as `pca.npz`.

512-d maps cost 20 to 180 MB per image in fp16; most of their variance lies in few directions. The
basis is fitted on pixels sampled from a fixed, evenly spaced sample of ALL inputs (before
`--shard`), so every shard of a job array fits the same basis. Stored features are
`(f - mean) @ components.T`; `PCABasis.reconstruct` maps them back to 512-d (the orthogonal
projection of the original onto the basis, plus the mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import LsegError
from ..store.atomic import atomic_path

PCA_FILE = "pca.npz"
PIXELS_PER_IMAGE = 4096
SAMPLE_IMAGES = 16


@dataclass
class PCABasis:
    mean: np.ndarray  # (C,) float32
    components: np.ndarray  # (K, C) float32, orthonormal rows, by decreasing variance
    explained: np.ndarray  # (K,) fraction of the sample's variance per component

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    def project(self, feats):
        """(…, C, h, w) -> (…, K, h, w); numpy or torch (on the tensor's device)."""
        if isinstance(feats, torch.Tensor):
            mean = torch.as_tensor(self.mean, device=feats.device, dtype=feats.dtype)
            comp = torch.as_tensor(self.components, device=feats.device, dtype=feats.dtype)
            return torch.einsum("...chw,kc->...khw", feats - mean[:, None, None], comp)
        feats = np.asarray(feats, dtype=np.float32)
        return np.einsum("...chw,kc->...khw", feats - self.mean[:, None, None], self.components)

    def reconstruct(self, reduced) -> np.ndarray:
        """(…, K, h, w) -> (…, C, h, w) float32: back to the feature space of the text embeddings."""
        reduced = np.asarray(reduced, dtype=np.float32)
        return np.einsum("...khw,kc->...chw", reduced, self.components) + self.mean[:, None, None]

    def save(self, path: Path) -> None:
        with atomic_path(path, suffix=".part") as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=self.mean, components=self.components, explained=self.explained)

    @classmethod
    def load(cls, path: str | Path) -> PCABasis:
        path = Path(path)
        if path.is_dir():
            path = path / PCA_FILE
        try:
            with np.load(path) as data:
                return cls(data["mean"], data["components"], data["explained"])
        except (OSError, KeyError, ValueError) as exc:
            raise LsegError(f"cannot read PCA basis {path}: {exc}") from None


def sample_pixels(feats: np.ndarray, seed: int, count: int = PIXELS_PER_IMAGE) -> np.ndarray:
    """(C, h, w) -> (n, C) pixels at a seeded random subset of positions."""
    c = feats.shape[0]
    flat = feats.reshape(c, -1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(flat.shape[1], size=min(count, flat.shape[1]), replace=False)
    return flat[:, np.sort(pick)].T.astype(np.float64)


def fit_pca(pixels: np.ndarray, k: int) -> PCABasis:
    """Top-k eigenvectors of the covariance (float64), signs fixed so the basis is reproducible."""
    c = pixels.shape[1]
    if not 1 <= k <= c:
        raise LsegError(f"--pca K must be in 1..{c}, got {k}")
    mean = pixels.mean(axis=0)
    centred = pixels - mean
    cov = centred.T @ centred / max(len(pixels) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:k]
    comps = vectors[:, order].T
    comps *= np.where(comps[np.arange(k), np.abs(comps).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    total = values.sum()
    explained = values[order] / total if total > 0 else np.zeros(k)
    return PCABasis(mean.astype(np.float32), comps.astype(np.float32), explained.astype(np.float32))


def sample_indices(n: int, count: int = SAMPLE_IMAGES) -> list[int]:
    """Evenly spaced indices into n sorted items (the same list for every shard)."""
    if n <= count:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (count - 1))) for i in range(count)})


def ensure_pca(out: Path | None, spec, all_items, k: int, max_pixels, *, refit: bool, computer=None,
               encoder=None) -> Path:
    """The out folder's `pca.npz`: kept when resuming, else fitted on the sample and written."""
    import tempfile

    from .compute import FeatureComputer
    from .decode import Decoder, ItemFailure

    path = (out / PCA_FILE) if out is not None else Path(tempfile.mkdtemp(prefix="lseg-pca-")) / PCA_FILE
    if path.exists() and not refit:
        basis = PCABasis.load(path)
        if basis.k != k:
            raise LsegError(f"{path} holds a {basis.k}-d basis, not {k}-d; pass --overwrite to refit")
        return path
    usable = [it for it in all_items if not it.error]
    sample = [usable[i] for i in sample_indices(len(usable))]
    decoder = Decoder(spec.native_size, max_pixels)
    own = computer is None
    computer = computer or FeatureComputer(spec, encoder)
    pixels = []
    try:
        for n, item in enumerate(sample):
            try:
                img = torch.from_numpy(decoder(item))
            except ItemFailure:
                continue
            if spec.native_size is not None:
                feats = computer.native_batch(img[None], raw=True)[0]
            else:
                feats = computer.recipe_images([img], raw=True)[0]
            pixels.append(sample_pixels(feats, seed=n))
    finally:
        if own:
            computer.close()
    if not pixels:
        raise LsegError("--pca: no input of the sample could be decoded to fit the basis")
    basis = fit_pca(np.concatenate(pixels), k)
    basis.save(path)
    return path
