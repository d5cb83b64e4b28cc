"""A pytest plugin for `test_layout.py`: records what collecting the suite imported and whether it
asked for a GPU. Collection must stay free of both, so that it works (and is fast) on any machine."""

from __future__ import annotations

import json
import os
import sys

OPTIONAL = ("onnx", "onnxruntime", "tensorrt", "tensorrt_rtx", "polygraphy", "ray", "av")
_calls: list[str] = []


def pytest_configure(config):
    import torch

    real = torch.cuda.is_available

    def recording(*args, **kwargs):
        _calls.append("torch.cuda.is_available")
        return real(*args, **kwargs)

    torch.cuda.is_available = recording


def pytest_collection_finish(session):
    found = {"optional_imports": [m for m in OPTIONAL if m in sys.modules], "gpu_probes": list(_calls)}
    with open(os.environ["LSEG_COLLECTION_PROBE"], "w") as f:
        json.dump(found, f)
