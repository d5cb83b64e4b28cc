"""The size rule: valid sizes give the documented shape and unit norms; invalid ones a ValueError
naming the nearest valid sizes (property-based, on the tiny config of the same architecture)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lseg_encoder.configs import get_config
from lseg_encoder.errors import InputSizeError
from lseg_encoder.sizes import check_size, is_valid_side, nearest_valid_sides

TINY = get_config("tiny")
valid_side = st.integers(64, 1024).filter(lambda n: (n // 16) % 2 == 0)
invalid_side = st.integers(64, 1024).filter(lambda n: (n // 16) % 2 == 1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=valid_side, w=valid_side)
def test_valid_sizes_shape_and_unit_norm(tiny_encoder, h, w):
    x = torch.rand(1, 3, h, w) * 2 - 1
    with torch.inference_mode():
        y = tiny_encoder(x)
    assert tuple(y.shape) == (1, 512, 8 * (h // 16), 8 * (w // 16))
    norms = y.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=invalid_side, w=st.integers(64, 1024))
def test_invalid_sizes_raise_value_error_with_nearest(tiny_encoder, h, w):
    with pytest.raises(ValueError, match=r"not supported by tiny .* height \d+: try \d+ or \d+"):
        tiny_encoder(torch.zeros(1, 3, h, w))


@given(n=st.integers(16, 4096))
def test_nearest_valid_sides_are_valid_and_adjacent(n):
    options = nearest_valid_sides(TINY, n)
    assert all(is_valid_side(TINY, m) for m in options)
    assert options[-1] > n
    assert all(not is_valid_side(TINY, m) for m in range(options[0] + 1, n + 1)) if options[0] <= n else True


@pytest.mark.parametrize(("backbone", "size", "ok"), [
    ("clip_vitl16_384", (384, 384), True), ("clip_vitl16_384", (260, 260), True),
    ("clip_vitl16_384", (384, 390), True), ("clip_vitl16_384", (400, 400), False),
    ("clip_vitl16_384", (336, 448), False), ("clip_resnet101", (416, 416), True),
    ("clip_resnet101", (260, 260), False), ("clip_vitb32_384", (400, 400), True),
])
def test_size_rule_matches_official_behaviour(backbone, size, ok):
    """Cases from SPEC §4 'Input-size rules (checked by running the original code)'."""
    config = get_config(backbone)
    if ok:
        check_size(config, *size)
    else:
        with pytest.raises(InputSizeError):
            check_size(config, *size)


@pytest.mark.parametrize(("backbone", "size", "out"), [
    ("clip_vitb32_384", (400, 400), (192, 192)), ("clip_resnet101", (320, 480), (160, 240)),
])
def test_other_backbones_output_shape(backbone, size, out):
    from lseg_encoder.model import build_encoder

    enc = build_encoder(backbone)
    assert enc.config.output_size(*size) == out
    if backbone == "clip_vitb32_384":  # cheap enough to run on 2 cores
        with torch.inference_mode():
            y = enc(torch.rand(1, 3, *size))
        assert tuple(y.shape[-2:]) == out
