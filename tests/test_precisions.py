"""The one table of precision names (src/lseg_encoder/precisions.py)."""

import pytest
import torch

from lseg_encoder.precisions import TORCH_DTYPES, dtype_name, torch_dtype


def test_names_map_to_torch_dtypes_and_metadata_spellings():
    assert torch_dtype("fp16") is torch.float16 and torch_dtype("bf16") is torch.bfloat16
    assert [dtype_name(n) for n in TORCH_DTYPES] == ["float32", "float16", "bfloat16"]
    with pytest.raises(KeyError):
        torch_dtype("fp4")
