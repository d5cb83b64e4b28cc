"""Where cached artefacts live (synthetic checkpoints, vocabulary embeddings, ONNX files, engines).

`LSEG_CACHE_DIR` overrides the user cache dir, so CI and tests can keep everything inside a
throw-away folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("LSEG_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("lseg-encoder"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
