"""What every recipe shares: the published building blocks and one crop-batching executor.

A recipe turns one image into per-pixel features by running the encoder on one or more crops
(resized, padded, flipped copies of the image) and assembling their outputs. The published code runs
those crops one at a time; here a recipe only *plans* them (`Plan`: the crops plus how to assemble
their features) and `execute` runs the crops of any number of plans, grouped by size, as few forward
calls as `max_batch` allows. That is where the speed comes from, and it changes no number beyond
batch-size rounding.

The building blocks are the notation of `RECIPES.md` (shared reference set): `up2`, `resize`,
`flip`, `pad`, the published normalisation. They are module-level functions so that each recipe
reads like its specification.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..configs import EncoderConfig, get_config
from ..errors import LsegError
from ..preprocess import load_image
from ..sizes import is_valid_side

Forward = Callable[[torch.Tensor], torch.Tensor]

# The published pipelines normalise with torchvision Normalize([0.5]*3, [0.5]*3) whatever the
# backbone, and pad with -mean/std = -1 (RECIPES.md "Input normalisation", "pad").
PUBLISHED_MEAN = 0.5
PUBLISHED_STD = 0.5
PAD_VALUE = -PUBLISHED_MEAN / PUBLISHED_STD
DEFAULT_MAX_BATCH = 16


class RecipeError(LsegError, ValueError):
    """Recipe parameters or an image size that a recipe cannot process."""


def resolve_config(backbone: str | EncoderConfig) -> EncoderConfig:
    return get_config(backbone) if isinstance(backbone, str) else backbone


def image_array(image) -> np.ndarray:
    """HxWx3 uint8 RGB array from an array, PIL image or path (ImageError for anything else)."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image
    return np.asarray(load_image(image))


def published_input(image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """(1, 3, H, W) float32 `(img / 255 - 0.5) / 0.5`, in the op order of ToTensor + Normalize."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device or "cpu").permute(2, 0, 1)
    x = x.to(torch.float32).div(255)
    return x.sub(PUBLISHED_MEAN).div(PUBLISHED_STD).unsqueeze(0)


def resize(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear with align_corners=True, the `up_kwargs` of the published evaluation module."""
    return F.interpolate(t, (height, width), mode="bilinear", align_corners=True)


def up2(t: torch.Tensor) -> torch.Tensor:
    """LSegNet's `output_conv`: the 2x bilinear upsampling the multi-scale recipe applies to `enc`."""
    return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)


def flip(t: torch.Tensor) -> torch.Tensor:
    """Mirror along the width axis."""
    return t.flip(-1)


def flip_sum(plain: torch.Tensor, flipped: torch.Tensor | None) -> torch.Tensor:
    """`infer(t) = g(t) + flip(g(flip(t)))`: a SUM, not a mean (RECIPES.md); `flipped` is
    g(flip(t)), or None when flip is off."""
    return plain if flipped is None else plain + flip(flipped)


def pad(t: torch.Tensor, crop: int) -> torch.Tensor:
    """Pad bottom/right up to at least `crop` with PAD_VALUE; larger sides stay as they are."""
    h, w = t.shape[-2:]
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if ph == 0 and pw == 0:
        return t
    return F.pad(t, (0, pw, 0, ph), value=PAD_VALUE)


def scaled_size(h: int, w: int, long: int) -> tuple[int, int]:
    """The long side becomes `long`, the short side `int(short * long / long_side + 0.5)`."""
    if h > w:
        return long, int(w * long / h + 0.5)
    return int(h * long / w + 0.5), long


def half_resolution(config: EncoderConfig, n: int) -> bool:
    """Whether a square side `n` gives encoder features of exactly n/2 (n // 16 * 8 for ViT-L/16)."""
    return n % 2 == 0 and is_valid_side(config, n) and config.output_size(n, n) == (n // 2, n // 2)


def check_crop(config: EncoderConfig, crop: int, what: str) -> None:
    """Refuse a crop side whose features are not exactly half of it.

    Both recipes rely on it: multi-scale needs `up2(enc(crop))` to cover the crop, OpenScene needs
    feature pixel (i, j) on image pixel (i, j). With any other side the published code fails at the
    accumulation or silently shifts features against pixels, so we stop before running anything."""
    if half_resolution(config, crop):
        return
    span = range(max(crop - 4 * config.stride, 1), crop + 4 * config.stride + 1)
    fits = [m for m in span if half_resolution(config, m)]
    hint = " or ".join(map(str, [m for m in fits if m < crop][-1:] + [m for m in fits if m > crop][:1]))
    raise RecipeError(f"{what} {crop} does not work with {config.name}: its features must be exactly half the "
                      f"crop (size rule: {config.size_rule()}); try {hint or 'a larger size'}")


class Plan(abc.ABC):
    """The work for one image: `crops` (each (3, H, W), already normalised, resized and padded) and
    how their features are assembled. `execute` calls `add` once per crop, in any order, with the
    features of the crop and (flip on) of its mirror; `result` gives the assembled features."""

    crops: list[torch.Tensor]
    flip: bool

    @abc.abstractmethod
    def add(self, index: int, plain: torch.Tensor, flipped: torch.Tensor | None) -> None:
        """plain = forward(crop)[None], flipped = forward(flip(crop))[None] (un-mirrored: raw output)."""

    @abc.abstractmethod
    def result(self) -> torch.Tensor:
        """(1, 512, h, w) features after every crop was added."""


def execute(plans: Sequence[Plan], forward: Forward, max_batch: int) -> list[torch.Tensor]:
    """Run the crops of all plans: crops (and their mirrors) of one size go into one forward call,
    split into batches of at most `max_batch`; each crop's features go to its plan as soon as the
    crop and its mirror are both done, so no more than one batch of features is held at a time."""
    groups: dict[tuple[int, ...], list[tuple[int, int, bool]]] = {}
    for p, plan in enumerate(plans):
        for i, crop in enumerate(plan.crops):
            for mirrored in (False, True) if plan.flip else (False,):
                groups.setdefault(tuple(crop.shape), []).append((p, i, mirrored))
    pending: dict[tuple[int, int], dict[bool, torch.Tensor]] = {}
    for entries in groups.values():
        for start in range(0, len(entries), max_batch):
            chunk = entries[start:start + max_batch]
            batch = torch.stack([flip(plans[p].crops[i]) if m else plans[p].crops[i] for p, i, m in chunk])
            out = forward(batch)
            if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != len(chunk):
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise RecipeError(f"forward returned {got} for a batch of {len(chunk)}; expected (B, C, h, w)")
            for (p, i, m), features in zip(chunk, out.float()):
                parts = pending.setdefault((p, i), {})
                parts[m] = features[None]
                if len(parts) == (2 if plans[p].flip else 1):
                    del pending[(p, i)]
                    plans[p].add(i, parts[False], parts.get(True))
            del out, batch
    return [plan.result() for plan in plans]


class Recipe(abc.ABC):
    """A published feature procedure. `run(image, forward)` -> (512, h, w) float32 on the CPU;
    `run_many` batches the crops of several images together. Subclasses plan; this class runs."""

    name: str = "abstract"

    def __init__(self, *, backbone: str | EncoderConfig = "clip_vitl16_384", max_batch: int = DEFAULT_MAX_BATCH,
                 device: str | torch.device | None = None, keep_on_device: bool = False):
        self.config = resolve_config(backbone)
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise RecipeError(f"max_batch must be a positive integer, got {max_batch!r}")
        self.max_batch = max_batch
        self.device = torch.device(device) if device is not None else None
        self.keep_on_device = bool(keep_on_device)

    # what a subclass provides ------------------------------------------------------------------
    @abc.abstractmethod
    def recipe_params(self) -> dict:
        """The parameters that determine the features (JSON-able)."""

    @abc.abstractmethod
    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature-map size for an image of (height, width), without running anything."""

    @abc.abstractmethod
    def plan(self, image: np.ndarray) -> Plan:
        """The crops of one image (on `self.device`, CPU by default) and their assembly."""

    # shared ---------------------------------------------------------------------------------------
    def params(self) -> dict:
        """Recipe name, backbone and every parameter, for run.json (execution options such as
        max_batch or device are left out: they do not change the features)."""
        return {"recipe": self.name, "backbone": self.config.name, **self.recipe_params()}

    def run(self, image, forward: Forward) -> torch.Tensor:
        return self.run_many([image], forward)[0]

    def run_many(self, images: Sequence, forward: Forward) -> list[torch.Tensor]:
        """Features of several images; crops of equal size across images share forward calls."""
        with torch.no_grad():
            plans = [self.plan(image_array(image)) for image in images]
            outs = execute(plans, forward, self.max_batch)
        return [o[0] if self.keep_on_device else o[0].float().cpu() for o in outs]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "recipe")
        return f"{type(self).__name__}({args})"
