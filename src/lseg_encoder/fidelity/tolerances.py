"""THE tolerance table: every fidelity check (tests, exporter `--check`, `compare`, `verify`) reads
its limits from here, per precision. An unknown precision is an error, never a silent default.

Why these numbers:
- fp32: an fp32 re-implementation or ONNX graph differs from PyTorch only by op order, ~1e-7 on
  unit-vector components; 1e-4 max-abs and per-pixel cosine >= 0.99999 leave room for other
  kernels (oneDNN vs MLAS) while any real mistake (SPEC §5: >= 4e-5 .. 7e-2) is still caught
  by the cosine/relative checks at realistic sizes.
- fp16 / bf16: per-pixel cosine p0.1 >= 0.999 against the fp32 reference (the issue's goal), and the
  error must stay within `k_vs_baseline` times what PyTorch itself gets in the same precision
  (`err(candidate, fp32) <= k * err(torch_same_precision, fp32)`), which scales with size and dtype.
- label agreement: argmax over a fixed prompt set; with synthetic weights the logits are close to
  each other, so this is the least stable metric and gets the loosest limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LsegError


@dataclass(frozen=True)
class Tolerance:
    precision: str
    max_abs: float | None  # max |a - b| over all elements; None: not bounded (low precision)
    rel_l2: float  # ||a - b|| / ||b||
    pixel_cos_min: float | None  # worst pixel
    pixel_cos_p01: float  # 0.1th percentile of per-pixel cosine
    cosine: float  # global cosine of the flattened maps
    label_agreement: float  # fraction of pixels with the same argmax label
    k_vs_baseline: float | None  # candidate error <= k * same-precision torch error


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance("fp32", max_abs=1e-4, rel_l2=1e-4, pixel_cos_min=0.99999, pixel_cos_p01=0.99999,
                      cosine=0.99999, label_agreement=0.999, k_vs_baseline=None),
    "fp16": Tolerance("fp16", max_abs=None, rel_l2=5e-2, pixel_cos_min=None, pixel_cos_p01=0.999,
                      cosine=0.999, label_agreement=0.95, k_vs_baseline=4.0),
    "bf16": Tolerance("bf16", max_abs=None, rel_l2=1e-1, pixel_cos_min=None, pixel_cos_p01=0.99,
                      cosine=0.995, label_agreement=0.9, k_vs_baseline=4.0),
}


def tolerance_for(precision: str) -> Tolerance:
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise LsegError(f"no tolerances for precision {precision!r}; known: {', '.join(TOLERANCES)}") from None
