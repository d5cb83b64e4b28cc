"""Reading LSeg checkpoints safely and loading them strictly into our modules.

Accepted: a Lightning `.ckpt` (`state_dict` with the `net.` prefix), a plain state dict (`.pt`,
`.pth`, optionally under `model` or `state_dict`), and `.safetensors`. Pickled files are read with
`torch.load(weights_only=True)`; the only extra globals allowed are the few a Lightning 1.3/1.4
checkpoint carries (callback classes used as dict keys), each mapped to an inert placeholder, so no
code from the file is ever run.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..configs import CONFIGS, EncoderConfig, get_config
from ..errors import CheckpointError, first_sentences
from .synthetic import SYNTHETIC_MARKER


class _LightningPlaceholder:
    """Stands in for a Lightning class named in a checkpoint; never instantiated with data."""


# Lightning < 1.5 stores `callbacks` keyed by the callback *class*; unpickling needs these names.
LIGHTNING_GLOBALS = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
    "pytorch_lightning.callbacks.progress.ProgressBar",
    "pytorch_lightning.callbacks.progress.tqdm_progress.TQDMProgressBar",
)


@dataclass
class RawCheckpoint:
    path: Path
    state_dict: dict[str, torch.Tensor]  # keys without `net.`
    synthetic: dict | None = None
    dropped_keys: list[str] = field(default_factory=list)  # non-`net.` keys of a Lightning dict


def _refusal(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    """One whole-sentence line naming what was refused; torch's advice to disable `weights_only` is
    deliberately not repeated (following it would run the file's code)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: ([\w.]+)", text)
    if found:
        return CheckpointError(
            f"{path}: refused to load: the checkpoint names the Python global {found.group(1)}, and unpickling "
            "it would run code from the file; an LSeg checkpoint needs only tensors and plain containers. "
            "Re-save the weights as a state dict or .safetensors from a trusted copy.")
    detail = next((line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line
                   and not line.startswith(("Weights only load failed", "Check the documentation", "Please file"))),
                  type(exc).__name__)
    return CheckpointError(f"{path}: refused to load: it contains pickle content the safe loader does not accept "
                           f"({detail.rstrip('.')}), so it is not a plain checkpoint of tensors.")


def _torch_load(path: Path):
    """weights_only always; mmap only for the zip format (legacy non-zip checkpoints cannot be mapped)."""
    safe = [(_LightningPlaceholder, name) for name in LIGHTNING_GLOBALS]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except Exception as exc:  # garbage fed to the legacy unpickler fails with any type (IndexError, KeyError...)
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated?): "
                              f"{first_sentences(exc)}") from None


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read tensors from any accepted format; strip `net.`. Raises CheckpointError with one line."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None
    else:
        obj = _torch_load(path)
    synthetic = obj.get(SYNTHETIC_MARKER) if isinstance(obj, dict) else None
    if isinstance(obj, dict):
        for container in ("state_dict", "model"):
            if isinstance(obj.get(container), dict):
                obj = obj[container]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors (not an LSeg checkpoint?)")
    has_prefix = any(k.startswith("net.") for k in obj)
    state, dropped = {}, []
    for key, value in obj.items():
        if has_prefix and not key.startswith("net."):
            dropped.append(key)  # other LightningModule state; LSeg has none, but say so
            continue
        state[key[4:] if has_prefix else key] = value
    return RawCheckpoint(path, state, synthetic, dropped)


_BACKBONE_SIGNATURES = {
    # (key, shape) -> backbone
    ("pretrained.model.patch_embed.proj.weight", (1024, 3, 16, 16)): "clip_vitl16_384",
    ("pretrained.model.patch_embed.proj.weight", (768, 3, 32, 32)): "clip_vitb32_384",
    ("pretrained.layer1.0.weight", (64, 3, 7, 7)): "clip_resnet101",
}


def infer_backbone(state_dict: dict[str, torch.Tensor]) -> str:
    for (key, shape), name in _BACKBONE_SIGNATURES.items():
        if key in state_dict and tuple(state_dict[key].shape) == shape:
            return name
    for name, config in CONFIGS.items():  # registered small configs (e.g. tiny)
        if config.is_vit and "pretrained.model.patch_embed.proj.weight" in state_dict:
            want = (config.backbone.embed_dim, 3, config.backbone.patch, config.backbone.patch)
            if tuple(state_dict["pretrained.model.patch_embed.proj.weight"].shape) == want and \
                    f"pretrained.model.blocks.{max(config.backbone.taps)}.norm1.weight" in state_dict:
                return name
    raise CheckpointError("cannot tell the backbone from the checkpoint keys (not an LSeg image-encoder "
                          "checkpoint?); pass backbone= / --backbone explicitly")


def _summarise(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def load_state_strict(model: torch.nn.Module, raw: RawCheckpoint, config: EncoderConfig) -> None:
    from ..model.encoder import checkpoint_to_module_key, is_ignored_checkpoint_key

    expected = model.state_dict()
    mapped, unexpected = {}, []
    for key, value in raw.state_dict.items():
        if is_ignored_checkpoint_key(key):
            continue
        module_key = checkpoint_to_module_key(key)
        if module_key in expected:
            mapped[module_key] = value
        else:
            unexpected.append(key)
    from ..model.encoder import module_to_checkpoint_key

    missing = [module_to_checkpoint_key(k) for k in expected if k not in mapped]
    mismatched = [f"{module_to_checkpoint_key(k)} {tuple(v.shape)} vs expected {tuple(expected[k].shape)}"
                  for k, v in mapped.items() if tuple(v.shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_summarise(mismatched, 3)}")
    if problems:
        raise CheckpointError(f"{raw.path}: does not match backbone {config.name}: " + "; ".join(problems))
    with torch.no_grad():
        for key, value in mapped.items():
            expected[key].copy_(value.to(expected[key].dtype))


def load_encoder(path, *, backbone: str | None = None, device="cpu", dtype: torch.dtype = torch.float32):
    """Build the encoder for `path` (backbone inferred from the keys unless given) and load it strictly.

    Returns the module in eval mode on `device`/`dtype`; `encoder.synthetic` tells whether the file
    was written by `synthetic_checkpoint`.
    """
    from ..model import build_encoder

    raw = read_checkpoint(path)
    name = backbone or infer_backbone(raw.state_dict)
    config = get_config(name)
    model = build_encoder(config)
    load_state_strict(model, raw, config)
    model.synthetic = raw.synthetic is not None
    model.source = str(raw.path)
    return model.to(device=device, dtype=dtype).eval()
