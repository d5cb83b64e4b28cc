"""Copy the compact subset of ../shared/reference that the golden tests need into tests/data.

Run once by hand (tests never read ../shared). Keeps the exact reference arrays, only dropping the
large `*.pool4` summaries of full-resolution maps; see tests/data/README.md.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference")
DST = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference"
CASES = ["lseg_clip_vitl16_384_384x384", "lseg_clip_vitl16_384_320x480", "lseg_clip_vitl16_384_260x260",
         "lseg_zs_clip_resnet101_320x480"]


def main() -> None:
    DST.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        ref = np.load(SRC / f"{case}.npz")
        keep = {k: ref[k] for k in ref.files if not k.endswith(".pool4")}
        np.savez_compressed(DST / f"{case}.npz", **keep)
    vectors = np.load(SRC / "projection_vectors.npz")
    np.savez_compressed(DST / "projection_vectors.npz", **{k: vectors[k] for k in vectors.files})
    for name in ["lseg_clip_vitl16_384.keys.json", "lseg_zs_clip_resnet101.keys.json",
                 "lseg_clip_vitb32_384.keys.json"]:
        shutil.copy(SRC / name, DST / name)


if __name__ == "__main__":
    main()
