"""Features for whole datasets and videos: `extract(inputs, out, ...)`, resumable, batched, sharded.

    from lseg_encoder.extract import extract, load_features
    summary = extract(["images/"], "feats/", size=(480, 480), batch=16)
    feats = load_features("feats/kitchen/0001.npy")       # (512, 240, 240) float16

Modules, one concept each: `inputs` (what to extract, ids, shards), `video` (frames via PyAV),
`decode` (pixels, the pixel budget), `loader` (worker processes, chunk claiming), `compute` (the model
on one device), `sinks` (atomic files, background writes), `manifest` (run.json, resume rules),
`pca`, `pipeline` (the local engine), `devices` (one process per GPU), `ray_engine`, `api`.
"""

from __future__ import annotations

from .api import extract
from .inputs import Item, expand_inputs, parse_shard, shard_of
from .pca import PCABasis
from .sinks import load_features
from .summary import ExtractSummary

__all__ = ["ExtractSummary", "Item", "PCABasis", "expand_inputs", "extract", "load_features", "parse_shard",
           "shard_of"]
