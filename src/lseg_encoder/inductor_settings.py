"""Inductor settings of the fp16/bf16 CUDA graphs, shared by the compiled runner and AOTI packages.

`realize_reads_threshold` 2 stores the ViT's residual sum after every block instead of letting each
LayerNorm re-read up to five branch outputs (docs/benchmarks.md, seventh and eighth sessions: part of
the 0.6-2.5 % at 260-780 px and 2.2 % at batch 16 x 480 on the H100, fidelity passing at all six
sizes). One function, so that the graph C++ replays is compiled as the graph Python runs.
"""

from __future__ import annotations

import torch

from .precisions import half_on_cuda

_HALF_CUDA = {"realize_reads_threshold": 2}


def inductor_defaults(precision: str, device: str | torch.device) -> dict:
    """The settings measured for `precision` on `device` (a new dict; empty where none were)."""
    return dict(_HALF_CUDA) if half_on_cuda(precision, device) else {}
