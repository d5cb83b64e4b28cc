"""Checks every command runs on its arguments BEFORE loading a checkpoint or running the model.

Why: a size the machine cannot hold, an output path that cannot be written or a backend that
cannot execute used to fail only after the checkpoint load and the forward pass (50 s for
`export`), or after building a 700 MB engine. Everything here is cheap: file-system look-ups, a
memory estimate, a peek at checkpoint keys (lazy for zip and safetensors files).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..configs import CONFIGS, EncoderConfig, get_config
from ..errors import BackendUnavailable, InputSizeError, LsegError

# activations live during one forward, in float32 elements per unit (see `forward_bytes`)
_VIT_ELEMENTS_PER_TOKEN_DIM = 14   # qkv (3) + attention out (1) + MLP hidden (4) + residuals (2) + 4 taps
_DECODER_FEATURE_MAPS = 6          # live fusion maps at H/2 x W/2 with `features` channels
_HEAD_MAPS = 3                     # head1 output, its norm and the normalised copy (out_dim channels)
_INPUT_COPIES = 3                  # resized image, float copy, normalised tensor (3 channels)


# `tiny` and other test-only configs stay accepted (tests use them) but are not offered in --help
PUBLIC_BACKBONES = tuple(sorted(name for name, c in CONFIGS.items() if not c.synthetic_only))


def backbone_name(text: str) -> str:
    """argparse type for --backbone: any registered config, listing only the public ones on error."""
    if text not in CONFIGS:
        import argparse

        raise argparse.ArgumentTypeError(f"unknown backbone {text!r}; choose from {', '.join(PUBLIC_BACKBONES)}")
    return text


def add_max_pixels_arg(parser) -> None:
    from ..images import DEFAULT_MAX_PIXELS

    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=f"refuse images with more pixels, before decoding them (default {DEFAULT_MAX_PIXELS:,})")


def check_max_pixels(value: int) -> None:
    if value < 1:
        raise LsegError(f"--max-pixels must be at least 1, got {value}")


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...], flag: str = "--output") -> Path:
    """Refuse an output that cannot be written: its suffix here, the rest (a directory in the way, a
    parent that is a file, no permission) by the atomic writer's own pre-check."""
    from ..store.atomic import ensure_writable_parent

    path = Path(path)
    if path.is_dir():
        ensure_writable_parent(path)  # raises the writer's one message for a directory in the way
    if suffixes and path.suffix.lower() not in suffixes:
        raise LsegError(f"{flag} must end in {' or '.join(suffixes)}, got {path}")
    ensure_writable_parent(path)
    return path


def planned_config(weights: str | None, backbone: str | None) -> EncoderConfig:
    """The backbone a command will load, known before loading it (checkpoint keys only)."""
    from ..weights.choice import planned_backbone

    return get_config(planned_backbone(weights, backbone))


def forward_bytes(config: EncoderConfig, height: int, width: int, batch: int = 1) -> int:
    """Estimated peak activation memory of one forward at (batch, 3, height, width), float32.

    An estimate (within ~2x of measured peaks), not a bound: it exists to refuse sizes that are
    hopeless on this machine with a number, not to fine-tune the largest size that fits.
    """
    out_h, out_w = height // 2, width // 2
    if config.is_vit:
        tokens = (height // config.backbone.patch) * (width // config.backbone.patch)
        backbone = tokens * config.backbone.embed_dim * _VIT_ELEMENTS_PER_TOKEN_DIM
    else:
        backbone = (height // 4) * (width // 4) * 256 * 8  # ResNet stem and stage 1 dominate
    decoder = out_h * out_w * (config.features * _DECODER_FEATURE_MAPS + config.out_dim * _HEAD_MAPS)
    image = height * width * 3 * _INPUT_COPIES
    return 4 * batch * (backbone + decoder + image)


def available_bytes(device: str) -> tuple[int | None, str]:
    """(free bytes, where) for `device`: CUDA free memory, or the host's MemAvailable."""
    if str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free), f"free on {torch.cuda.get_device_name(torch.device(device))}"
        return None, "cuda"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available RAM"
    except (ValueError, OSError, AttributeError):
        return None, "RAM"


def largest_square_that_fits(config: EncoderConfig, budget: int, batch: int = 1) -> int | None:
    from ..sizes import nearest_valid_sides

    lo, hi = 0, 1 << 20
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if forward_bytes(config, mid, mid, batch) <= budget else (lo, mid)
    below = nearest_valid_sides(config, lo)[0] if lo >= 1 else None
    return below if below is not None and below <= lo else None


def check_size_fits(config: EncoderConfig, size: tuple[int, int], device: str = "cpu", batch: int = 1,
                    available: int | None = None) -> None:
    """The size rule of the backbone, then the memory estimate against what the device has free."""
    from ..sizes import check_size

    height, width = (int(v) for v in size)
    check_size(config, height, width)
    needed = forward_bytes(config, height, width, batch)
    where = "available memory"
    if available is None:
        available, where = available_bytes(device)
    if available is None or needed <= available:
        return
    fits = largest_square_that_fits(config, available, batch)
    hint = f"; the largest square size that fits is about {fits}" if fits else ""
    raise InputSizeError(
        f"input size {height}x{width} (batch {batch}) needs about {needed / 2**30:,.1f} GiB of activations for "
        f"{config.name} (estimate), more than the {available / 2**30:,.1f} GiB {where}{hint}")


def check_backend_can_execute(backend: str, device: str) -> None:
    """Refuse a backend that cannot run here before any ONNX export or engine build for it (each
    backend's probe in the backend table: CUDA, an importable runtime, a supported GPU...)."""
    from ..backends import unavailable_reason

    reason = unavailable_reason(backend, device)
    if reason:
        raise BackendUnavailable(f"--backend {backend} cannot run on {device} here, so nothing was built: {reason}")


def default_output(command: str, image: str | os.PathLike | None, suffix: str = ".png") -> Path:
    """`reports/<command>/<image stem>.png` (under the current directory), for the README's commands."""
    stem = Path(image).stem if image else "sample_cat"
    return Path("reports") / command / f"{stem}{suffix}"
