"""Fingerprints that key the artefact cache: of files (sha256) and of weights (tensors).

Hashing the weights of ViT-L/16 reads 1.2 GB, so a module's fingerprint is memoised on the module
and reused until one of its tensors changes: every in-place update bumps a tensor's version counter,
and the memo is keyed by those counters.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

_MEMO_ATTR = "_lseg_weights_fingerprint"


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 4 MiB chunks (checkpoints, ONNX files and engines are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_fingerprint(state) -> str:
    """sha256 over names, dtypes, shapes and bytes of a mapping of tensors (any dtype, bf16 too).

    Identifies weights, not files: the same tensors saved as .ckpt or .safetensors give one key,
    and a change of a value or of its storage dtype gives a new one.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _versions(module: torch.nn.Module) -> tuple:
    return tuple((name, t.data_ptr(), t._version) for name, t in module.state_dict(keep_vars=True).items())


def weights_fingerprint(module: torch.nn.Module) -> str:
    """`tensors_fingerprint` of a module's state dict, computed once per module and weights version."""
    versions = _versions(module)
    memo = module.__dict__.get(_MEMO_ATTR)
    if memo is not None and memo[0] == versions:
        return memo[1]
    digest = tensors_fingerprint(module.state_dict())
    module.__dict__[_MEMO_ATTR] = (versions, digest)
    return digest
