"""`load_text_encoder`: CLIP ViT-B/32 text features straight from an LSeg checkpoint.

LSeg checkpoints carry the untouched OpenAI CLIP ViT-B/32 under `net.clip_pretrained.*` (SPEC §8),
so no CLIP download is needed; a bare OpenAI CLIP ViT-B/32 state dict (`token_embedding.weight`,
`transformer.*`, ...) is accepted as well.

Precision decision: the checkpoint stores CLIP's Linear/attention weights and `text_projection` in
fp16 (lang-seg ran CLIP in half precision on CUDA). We **upcast the stored values to fp32 and compute
in fp32**: fp16 -> fp32 is exact, so no information is lost, and CPU fp16 matmuls are both slow and
less accurate. Results therefore equal the reference's `text_features_fp16_rounded_weights` for a
checkpoint with fp16 storage, and `text_features` for one whose tensors are fp32 (both are tested).
They differ from lang-seg's CUDA fp16 *computation* by fp16 rounding (~1e-3), which does not change
which label wins except at near-ties.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, LabelError
from .model import VITB32_TEXT, TextTowerConfig, TextTransformer
from .tokenizer import get_tokenizer

LSEG_PREFIX = "clip_pretrained."
_NOT_TEXT = ("visual.", "logit_scale", "input_resolution", "context_length", "vocab_size")


def text_tower_state(state: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """The text-tower tensors under CLIP's own names, from an LSeg (`clip_pretrained.*`, with or
    without `net.`) or a bare CLIP state dict. Raises CheckpointError if there is none."""
    if any(k.startswith("net.") for k in state):
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    if any(k.startswith(LSEG_PREFIX) for k in state):
        state = {k[len(LSEG_PREFIX):]: v for k, v in state.items() if k.startswith(LSEG_PREFIX)}
    elif "token_embedding.weight" not in state:
        raise CheckpointError(f"{source}: no CLIP text tower found (expected `net.clip_pretrained.*` keys of an "
                              "LSeg checkpoint or a bare CLIP state dict with `token_embedding.weight`)")
    return {k: v for k, v in state.items() if not k.startswith(_NOT_TEXT)}


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """Fingerprint of the stored text-tower tensors (`artifacts.tensors_fingerprint`).

    Keys caches of anything derived from the text tower (vocabulary embeddings): any change of a
    weight, or of its storage dtype, gives a new key.
    """
    from ..store.fingerprint import tensors_fingerprint

    return tensors_fingerprint(state)


def _check_state(model: TextTransformer, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{name}: {', '.join(items[:4])}{', ...' if len(items) > 4 else ''}"
                for name, items in (("missing", missing), ("unexpected", unexpected),
                                    ("shape mismatch", mismatched)) if items]
    if problems:
        raise CheckpointError(f"{source}: not a CLIP ViT-B/32 text tower ({'; '.join(problems)})")


class TextEncoder:
    """Tokenizer + text transformer. `encode_text(labels)` gives the unit-norm features LSeg uses."""

    def __init__(self, state: dict[str, torch.Tensor], digest: str, source: str, device="cpu",
                 synthetic: bool = False):
        self._state = state
        self._model: TextTransformer | None = None
        self.device = torch.device(device)
        self.digest = digest  # identifies the weights, for caches
        self.source = source
        self.synthetic = synthetic  # written by `synthetic_checkpoint` (not a trained model)

    @property
    def model(self) -> TextTransformer:
        """Built on first use: a warm vocabulary-cache lookup needs only the digest."""
        if self._model is None:
            model = TextTransformer(VITB32_TEXT)
            with torch.no_grad():
                for key, param in model.state_dict().items():
                    param.copy_(self._state[key].to(torch.float32))  # fp16 storage -> fp32, exact
            self._model = model.to(self.device).eval()
            self._state = None
        return self._model

    @property
    def config(self) -> TextTowerConfig:
        return VITB32_TEXT

    @torch.inference_mode()
    def encode_ids(self, ids, normalize: bool = True) -> torch.Tensor:
        """(N, L) token ids (zero-padded) -> (N, 512) float32 on the CPU."""
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64, device=self.device)
        feats = self.model(ids).float()
        if normalize:
            feats = feats / feats.norm(dim=-1, keepdim=True)
        return feats.cpu()

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Labels -> (N, 512) float32, unit-norm (LSeg divides CLIP's output by its L2 norm)."""
        if isinstance(texts, str):
            raise LabelError("encode_text takes a list of labels, not a single string")
        if not texts:
            raise LabelError("no labels given")
        return self.encode_ids(get_tokenizer()(list(texts), self.config.context_length), normalize)


def load_text_encoder(source: str | Path | Mapping[str, torch.Tensor], *, device="cpu") -> TextEncoder:
    """Build the CLIP text encoder from an LSeg checkpoint file, or from a state dict in memory.

    Stored fp16 tensors are upcast to fp32 (see the module docstring); raises CheckpointError if the
    file has no complete ViT-B/32 text tower.
    """
    synthetic = False
    if isinstance(source, Mapping):
        name, state = "state dict", dict(source)
    else:
        from ..weights.checkpoint import read_checkpoint

        raw = read_checkpoint(source)
        name, state, synthetic = str(raw.path), raw.state_dict, raw.synthetic is not None
    state = text_tower_state(state, name)
    with torch.device("meta"):  # names and shapes only, no memory
        layout = TextTransformer(VITB32_TEXT)
    _check_state(layout, state, name)
    return TextEncoder(state, weights_digest(state), name, device, synthetic)
