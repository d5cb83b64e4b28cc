"""Pixels in, stored features out, on one device: the part of extraction that touches the model.

`JobSpec` is everything a process needs to rebuild the computation (it is pickled to GPU worker
processes and Ray actors), `FeatureComputer` holds the activated runner. The native recipe is run
here directly: its images are all resized to one size, so a whole chunk is ONE forward call, with
the uint8 batch normalised on the device (4x less host-to-device traffic than float32). Other
recipes plan their own crops (`lseg_encoder.recipes`) and get the runner as their `forward`.
After the encoder, still on the device: PCA projection, resize to `--feature-size`, cast to the
stored dtype; only then the copy to host, on a stream of its own, so that it overlaps the next
chunk's forward (`native_start`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from ..configs import EncoderConfig, get_config
from ..errors import LsegError
from ..precisions import TORCH_DTYPES
from ..sizes import check_size

DTYPES = {name: TORCH_DTYPES[name] for name in ("fp16", "fp32")}  # of the stored features
NATIVE = "native"


@dataclass(frozen=True)
class JobSpec:
    weights: str
    backbone: str
    backend: str
    device: str
    recipe: str = NATIVE
    recipe_options: dict = field(default_factory=dict)  # recipe parameters (size for native)
    dtype: str = "fp16"
    feature_size: tuple[int, int] | None = None
    pca_path: str | None = None
    batch: int = 8

    def on(self, device: str) -> JobSpec:
        return dataclasses.replace(self, device=device)

    @property
    def config(self) -> EncoderConfig:
        return get_config(self.backbone)

    @property
    def native_size(self) -> tuple[int, int] | None:
        """The size every image is resized to by the decoder (native recipe), else None."""
        if self.recipe != NATIVE:
            return None
        h, w = self.recipe_options.get("size", (480, 480))
        return int(h), int(w)


def make_recipe(spec: JobSpec, device: str | None = None):
    """The seam to `lseg_encoder.recipes` (`_recipe_for` in the CLI builds `spec.recipe*`).

    Native returns None: its batched path lives in `FeatureComputer.native_batch`.
    """
    if spec.recipe == NATIVE:
        return None
    try:
        from ..recipes import get_recipe
    except ImportError:
        raise LsegError(f"recipe {spec.recipe!r} needs lseg_encoder.recipes, which this build lacks") from None
    return get_recipe(spec.recipe, backbone=spec.config, max_batch=spec.batch, device=device,
                      keep_on_device=device is not None, **spec.recipe_options)


def recipe_params(spec: JobSpec) -> dict:
    """The recipe record of run.json (name, backbone and the parameters that change features)."""
    if spec.recipe == NATIVE:
        return {"recipe": NATIVE, "backbone": spec.backbone, "size": list(spec.native_size)}
    return make_recipe(spec).params()


def validate(spec: JobSpec) -> None:
    """Refuse sizes the backbone cannot process and bad options, before any model is loaded."""
    if spec.dtype not in DTYPES:
        raise LsegError(f"unknown --dtype {spec.dtype!r}; use one of {', '.join(DTYPES)}")
    if spec.batch < 1:
        raise LsegError(f"--batch must be >= 1, got {spec.batch}")
    if spec.feature_size is not None and min(spec.feature_size) < 1:
        raise LsegError(f"bad --feature-size {spec.feature_size}")
    if spec.recipe == NATIVE:
        check_size(spec.config, *spec.native_size)
    else:
        make_recipe(spec)  # the recipe checks its own parameters


class FeatureComputer:
    """The activated runner for one device, plus the steps between it and the writer."""

    def __init__(self, spec: JobSpec, encoder=None):
        from ..backends import BACKENDS, make_runner
        from ..weights.checkpoint import load_encoder
        from .pca import PCABasis

        self.spec = spec
        self.device = torch.device(spec.device)
        encoder = encoder if encoder is not None else load_encoder(spec.weights, backbone=spec.backbone)
        size = spec.native_size or (384, 384)
        self.runner = make_runner(spec.backend, encoder, device=spec.device, size=size, batch=spec.batch).activate()
        self.recipe = make_recipe(spec, device=spec.device)
        self.pca = PCABasis.load(spec.pca_path) if spec.pca_path else None
        # a backend specialised per shape (the table's `specialised`): a short chunk (the last one, or one
        # with failed items) is padded to the full batch instead of compiling or building another shape
        self.pad_to = spec.batch if BACKENDS[spec.backend].specialised else None
        mean, std = spec.config.mean_std
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._copier: torch.cuda.Stream | None = None  # the stream of the copies to the host (CUDA)

    def close(self) -> None:
        self.runner.deactivate()

    def native_batch(self, pixels: torch.Tensor, raw: bool = False) -> list[np.ndarray]:
        """(B, H, W, 3) uint8 (pinned when on CUDA) -> B stored feature maps (`raw`: float32 encoder
        output, before PCA, resize and cast; what the PCA basis is fitted on)."""
        return self.native_start(pixels, raw).result()

    @torch.inference_mode()
    def native_start(self, pixels: torch.Tensor, raw: bool = False) -> PendingFeatures:
        """`native_batch` without the wait: the forward and the copy to the host are queued and this
        returns; the caller prepares the next chunk meanwhile (`extract.pipeline.run_items`)."""
        count = int(pixels.shape[0])
        u8 = pixels.to(self.device, non_blocking=True)
        if self.pad_to and count < self.pad_to:
            u8 = torch.cat([u8, u8.new_zeros((self.pad_to - count, *u8.shape[1:]))])
        x = u8.permute(0, 3, 1, 2).to(torch.float32).div(255.0)  # same op order as `preprocess`
        x = ((x - self._mean) / self._std).contiguous()
        # stored as the runner writes them: ask for the stored dtype (see `_stores_runner_output`)
        out_dtype = DTYPES[self.spec.dtype] if not raw and self._stores_runner_output else None
        return self._to_host(self._stored(self.runner.infer(x, to_host=False, out_dtype=out_dtype)[:count], raw))

    @torch.inference_mode()
    def recipe_images(self, images: list[torch.Tensor], raw: bool = False) -> list[np.ndarray]:
        """Full-size uint8 (H, W, 3) images -> stored feature maps (crops of one size batched)."""
        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.runner.infer(x.to(self.device, non_blocking=True), to_host=False).float()

        arrays = [img.numpy() for img in images]
        if hasattr(self.recipe, "run_many"):
            outs = self.recipe.run_many(arrays, forward)
        else:
            outs = [self.recipe.run(a, forward) for a in arrays]
        from ..runners.base import to_host_tensor

        # one synchronous copy per output, as before the native path's overlap: nothing is queued behind it here
        return [to_host_tensor(self._stored(torch.as_tensor(o).to(self.device)[None], raw)).numpy()[0] for o in outs]

    @property
    def _stores_runner_output(self) -> bool:
        """No PCA and no resize: the stored features are the runner's, in the stored dtype. The runner is
        then asked for that dtype, and the compiled runner's finish kernel writes fp16 itself (the same
        values: it rounds the fp32 result it would have written) instead of fp32 features that a cast
        kernel reads back: at batch 16 x 480 px 0.9 GB written instead of 1.9 GB plus 2.8 GB of cast
        traffic, 4.0-4.6 % less device time a batch on the H100 (docs/benchmarks.md, run 68)."""
        return self.pca is None and self.spec.feature_size is None

    def _stored(self, feats: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """PCA, resize (in fp32) and cast, on the device: what is stored, before the copy to the host."""
        if raw:
            return feats.float().contiguous()
        if not self._stores_runner_output:
            feats = feats.float()
            if self.pca is not None:
                feats = self.pca.project(feats)
            if self.spec.feature_size is not None:
                feats = torch.nn.functional.interpolate(feats, size=self.spec.feature_size, mode="bilinear",
                                                        align_corners=False)
        return feats.to(DTYPES[self.spec.dtype]).contiguous()

    def _to_host(self, feats: torch.Tensor) -> PendingFeatures:
        """One copy of the batch into pinned host memory, on the copy stream: it runs while the compute
        stream takes the next chunk. The block comes from PyTorch's caching host allocator and returns
        to it once the arrays handed out (and so the writer's) are gone; pinning a new block is slow
        (0.8 s for 472 MB on the H100 machine), so in a steady run the same few blocks circulate."""
        from ..runners.base import copy_to_host_behind

        if feats.device.type != "cuda":
            return PendingFeatures(feats, None)
        spare = None
        if self._copier is None:  # the first chunk: the job's warm-up
            self._copier = torch.cuda.Stream(self.device)
            # two chunks are on their way to the host once the overlap runs: pin a second block now, inside the
            # warm-up, rather than in the middle of the run; held until this chunk's block is taken, so that the
            # two are distinct, then left in the allocator's cache
            spare = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
        host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
        del spare
        return PendingFeatures(host, copy_to_host_behind(feats, host, self._copier))


class PendingFeatures:
    """A batch's stored features on their way to the host; `result()` waits for the copy and returns one
    array per image (views of one pinned block, which stays pinned while any of them is alive)."""

    def __init__(self, host: torch.Tensor, done: torch.cuda.Event | None):
        self._host, self._done = host, done

    def result(self) -> list[np.ndarray]:
        if self._done is not None:
            self._done.synchronize()
        return list(self._host.numpy())
