"""The short precision names of the CLI and the API ("fp32", "fp16", "bf16") and their torch dtypes,
in one table: the runners, exporters, packagers and the extractor each had a copy of a part of it."""

from __future__ import annotations

import torch

TORCH_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    return TORCH_DTYPES[name]


def dtype_name(name: str) -> str:
    """"fp16" -> "float16": the spelling of package metadata and numpy."""
    return str(TORCH_DTYPES[name]).removeprefix("torch.")


def half_on_cuda(precision: str, device: str | torch.device) -> bool:
    """fp16 or bf16 on a CUDA device: where issue 13's fast-path levers were measured (fp16 on the H100;
    bf16 shares the graph). Each lever's default reads this and says in its own docstring why."""
    return precision in ("fp16", "bf16") and torch.device(device).type == "cuda"
