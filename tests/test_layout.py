"""Checkpoint layout and fill rule, against the reference keys json files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _golden import DATA
from lseg_encoder.configs import get_config
from lseg_encoder.model import build_encoder
from lseg_encoder.model.encoder import checkpoint_to_module_key, is_ignored_checkpoint_key
from lseg_encoder.weights.synthetic import checkpoint_layout, fill_value

LAYOUTS = {
    "clip_vitl16_384": "lseg_clip_vitl16_384.keys.json",
    "clip_vitb32_384": "lseg_clip_vitb32_384.keys.json",
    "clip_resnet101": "lseg_zs_clip_resnet101.keys.json",
}


def reference_keys(backbone: str) -> dict:
    return json.loads((DATA / LAYOUTS[backbone]).read_text())


@pytest.mark.parametrize("backbone", list(LAYOUTS))
def test_packaged_layout_equals_reference(backbone):
    ref = reference_keys(backbone)
    ours = checkpoint_layout(backbone)
    assert [k for k, _, _ in ours] == list(ref)
    for key, shape, dtype in ours:
        assert list(shape) == ref[key]["shape"], key
        assert dtype == ref[key]["dtype"], key


@pytest.mark.parametrize("backbone", list(LAYOUTS))
def test_model_keys_cover_checkpoint_exactly(backbone):
    """Every non-ignored checkpoint key maps onto a module tensor of the same shape, and the
    module has no tensor the checkpoint lacks."""
    model_state = build_encoder(get_config(backbone)).state_dict()
    mapped = {}
    for key, v in reference_keys(backbone).items():
        stripped = key.removeprefix("net.")
        if not is_ignored_checkpoint_key(stripped):
            mapped[checkpoint_to_module_key(stripped)] = tuple(v["shape"])
    assert set(mapped) == set(model_state)
    for key, shape in mapped.items():
        assert tuple(model_state[key].shape) == shape, key


@pytest.mark.parametrize("backbone", list(LAYOUTS))
def test_fill_rule_reproduces_reference_sums(backbone):
    for key, v in reference_keys(backbone).items():
        value = fill_value(key, v["shape"], 0)
        assert abs(float(value.double().sum()) - v["fill_sum"]) <= 1e-6 * max(1.0, abs(v["fill_sum"])), key
        np.testing.assert_array_equal(value.flatten()[:4].double().numpy(), np.array(v["fill_first"]), err_msg=key)


def test_fill_rule_depends_on_offset():
    a = fill_value("net.scratch.head1.weight", (4, 4, 1, 1), 0)
    b = fill_value("net.scratch.head1.weight", (4, 4, 1, 1), 1)
    assert not torch.equal(a, b)
