"""Feature recipes: parity with the published procedures, batching, sizes and parameter errors.

Parity: the shared recipe references (RECIPES.md) were computed by the original procedures on the
synthetic ViT-L/16 weights (fill offset 0); our recipes run the same weights through our encoder and
must match `pixels` and `proj16` within 1e-4 in float64. To show that this comparison bites, the same
run is repeated with one published detail changed (flip mean instead of sum, `up2` without
align_corners, ...) and must FAIL it; those variants reuse the encoder outputs of the correct run
(a cache keyed by the crop's bytes), so they cost almost no extra forwards.

The fast tests use the `tiny` config: batching changes nothing but the number of forward calls,
`output_size` predicts the shape, `native` is today's `features`, bad parameters are one-line errors.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from _golden import RECIPE_ATOL, reference, summaries
from lseg_encoder.errors import LsegError
from lseg_encoder.recipes import RECIPES, get_recipe
from lseg_encoder.recipes import multiscale as multiscale_module
from lseg_encoder.recipes import openscene as openscene_module
from lseg_encoder.recipes.base import flip


class RecordingForward:
    """Wraps a forward: records each call's batch shape and, with `cache`, serves crops it has seen
    before from memory (keyed by the crop's bytes) so recipe variants re-encode only new crops."""

    def __init__(self, forward, cache: bool = False):
        self.forward = forward
        self.calls: list[tuple[int, ...]] = []
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            self.calls.append(tuple(batch.shape))
            return self.forward(batch)
        keys = [hashlib.sha256(b.contiguous().numpy().tobytes()).hexdigest() for b in batch]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            self.calls.append((len(missing), *batch.shape[1:]))
            for i, out in zip(missing, self.forward(batch[missing])):
                self.cache[keys[i]] = out.clone()
        return torch.stack([self.cache[k] for k in keys])


def reference_errors(name: str, features: torch.Tensor, ref: dict) -> dict[str, float]:
    """max |ours - reference| of `<name>.pixels` and `<name>.proj16` (float64), shape checked first."""
    assert tuple(features.shape) == tuple(int(s) for s in ref[f"{name}.shape"][1:])
    ours = summaries(name, features[None], ref)
    return {key: float(np.abs(ours[key] - ref[key].astype(np.float64)).max())
            for key in (f"{name}.pixels", f"{name}.proj16")}


def recipe_for(case: str, **options):
    """The recipe and parameters a reference file was computed with."""
    ref = reference(case)
    assert int(ref["fill_offset"]) == 0
    if str(ref["recipe"]) == "openscene":
        return get_recipe("openscene", **options)
    return get_recipe("lseg-multiscale", scales=tuple(float(s) for s in ref["scales"]),
                      base_size=int(ref["base_size"]), crop_size=int(ref["crop_size"]),
                      flip=bool(ref["flip"]), **options)


# --- parity with the published procedures (ViT-L/16) -------------------------------------------------

MULTISCALE = "recipe_lseg_multiscale_shared"
OPENSCENE = "recipe_openscene_shared"


@pytest.fixture(scope="module")
def vitl16_forward(vitl16_encoder):
    return RecordingForward(vitl16_encoder, cache=True)


@pytest.fixture(scope="module")
def multiscale_raw(vitl16_forward):
    ref = reference(MULTISCALE)
    return recipe_for(MULTISCALE, raw=True, max_batch=4).run(ref["input.image"], vitl16_forward)


@pytest.mark.slow
def test_multiscale_matches_reference(multiscale_raw, vitl16_forward):
    ref = reference(MULTISCALE)
    # 180x240 at scales 0.75 (one padded crop) and 1.25 (488x650: a 2x2 sliding window), flip on:
    # 5 crops of 480x480 and their mirrors, in batches of at most 4.
    assert [c[0] for c in vitl16_forward.calls] == [4, 4, 2]
    errors = reference_errors("output_raw", multiscale_raw, ref)
    unit = recipe_for(MULTISCALE).run(ref["input.image"], vitl16_forward)  # default: unit features
    errors.update(reference_errors("output_unit", unit, ref))
    print({k: f"{v:.2e}" for k, v in errors.items()})
    assert all(v <= RECIPE_ATOL for v in errors.values()), errors
    torch.testing.assert_close(unit, multiscale_raw / multiscale_raw.norm(dim=0, keepdim=True), rtol=0, atol=0)


@pytest.mark.slow
def test_openscene_matches_reference(vitl16_forward):
    ref = reference(OPENSCENE)
    calls = len(vitl16_forward.calls)
    out = recipe_for(OPENSCENE).run(ref["input.image"], vitl16_forward)
    assert vitl16_forward.calls[calls:] == [(2, 3, 320, 320)]  # 120x160 -> 240x320 padded to 320, + mirror
    errors = reference_errors("output_raw", out, ref)
    print({k: f"{v:.2e}" for k, v in errors.items()})
    assert all(v <= RECIPE_ATOL for v in errors.values()), errors


def _flip_mean(plain, flipped):
    return (plain + flip(flipped)) / 2


def _up2_half_pixel(t):
    return torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)


def _resize_half_pixel(t, height, width):
    return torch.nn.functional.interpolate(t, (height, width), mode="bilinear", align_corners=False)


@pytest.mark.slow
@pytest.mark.parametrize("case, module, attr, wrong", [
    pytest.param(MULTISCALE, multiscale_module, "flip_sum", _flip_mean, id="multiscale-flip-mean"),
    pytest.param(MULTISCALE, multiscale_module, "up2", _up2_half_pixel, id="multiscale-up2-align-corners-false"),
    pytest.param(OPENSCENE, openscene_module, "flip_sum", _flip_mean, id="openscene-flip-mean"),
    pytest.param(OPENSCENE, openscene_module, "resize", _resize_half_pixel, id="openscene-resize-align-corners-false"),
])
def test_wrong_recipe_fails_reference(case, module, attr, wrong, vitl16_forward, monkeypatch):
    """Each variant is one detail away from the published procedure; the parity check must see it."""
    ref = reference(case)
    monkeypatch.setattr(module, attr, wrong)
    out = recipe_for(case, raw=True, max_batch=4) if case == MULTISCALE else recipe_for(case)
    errors = reference_errors("output_raw", out.run(ref["input.image"], vitl16_forward), ref)
    print({k: f"{v:.2e}" for k, v in errors.items()})
    assert max(errors.values()) > RECIPE_ATOL, errors


# --- fast tests on the tiny config --------------------------------------------------------------------

def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def tiny_multiscale(**options):
    # On a 24x32 image with base 72, crop 64 (stride 42): 0.75 -> 41x54 (one padded crop),
    # 1.0 -> 54x72 (short side padded, 1x2 window), 1.25 -> 68x90 (unpadded 2x2 window):
    # every branch of the procedure, 7 crops. Small sizes keep the 512-channel resizes cheap.
    return get_recipe("lseg-multiscale", scales=(0.75, 1.0, 1.25), base_size=72, crop_size=64,
                      backbone="tiny", **options)


def test_multiscale_batches_crops_of_one_size(tiny_encoder):
    image = random_image(24, 32)
    batched, single = RecordingForward(tiny_encoder), RecordingForward(tiny_encoder)
    a = tiny_multiscale(raw=True).run(image, batched)
    b = tiny_multiscale(raw=True, max_batch=1).run(image, single)
    assert batched.calls == [(14, 3, 64, 64)]  # 7 crops + 7 mirrors in one call
    assert single.calls == [(1, 3, 64, 64)] * 14
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    bounded = RecordingForward(tiny_encoder)
    tiny_multiscale(raw=True, max_batch=4).run(image, bounded)
    assert [c[0] for c in bounded.calls] == [4, 4, 4, 2]


def test_run_many_shares_forward_calls_across_images(tiny_encoder):
    images = [random_image(48, 64, seed) for seed in (1, 2)] + [random_image(64, 48, 3)]
    recipe = get_recipe("openscene", backbone="tiny")
    forward = RecordingForward(tiny_encoder)
    outs = recipe.run_many(images, forward)
    assert forward.calls == [(6, 3, 128, 128)]  # every image needs a 128 crop and its mirror
    for image, out in zip(images, outs):
        torch.testing.assert_close(out, recipe.run(image, tiny_encoder), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, params, image_hw", [
    ("native", {"size": (224, 160)}, (90, 120)),
    ("lseg-multiscale", {"scales": (0.75, 1.0, 1.25), "base_size": 72, "crop_size": 64}, (24, 32)),
    ("lseg-multiscale", {"scales": (1.0,), "base_size": 72, "crop_size": 64, "flip": False}, (40, 20)),
    ("openscene", {}, (48, 64)),
    ("openscene", {}, (64, 40)),
])
def test_output_size_predicts_the_run(tiny_encoder, name, params, image_hw):
    recipe = get_recipe(name, backbone="tiny", **params)
    out = recipe.run(random_image(*image_hw), tiny_encoder)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert tuple(out.shape) == (512, *recipe.output_size(*image_hw))
    assert torch.isfinite(out).all()


def test_multiscale_default_output_is_unit(tiny_encoder):
    image = random_image(24, 32)
    unit = tiny_multiscale().run(image, tiny_encoder)
    raw = tiny_multiscale(raw=True).run(image, tiny_encoder)
    torch.testing.assert_close(unit.double().norm(dim=0), torch.ones(24, 32, dtype=torch.float64), rtol=0, atol=1e-6)
    assert float(raw.norm(dim=0).mean()) > 2.0  # a sum over 3 scales x 2 flips of unit vectors
    torch.testing.assert_close(unit, raw / raw.norm(dim=0, keepdim=True), rtol=0, atol=0)


def test_native_is_the_features_path(tiny_encoder):
    from lseg_encoder.preprocess import preprocess

    image = random_image(24, 32)
    recipe = get_recipe("native", size=(224, 160), backbone=tiny_encoder.config)
    with torch.no_grad():
        expected = tiny_encoder(preprocess(image, (224, 160), tiny_encoder.config))[0]
    assert torch.equal(recipe.run(image, tiny_encoder), expected)
    assert recipe.params() == {"recipe": "native", "backbone": "tiny", "size": [224, 160]}


def test_recipes_run_on_a_runner(tiny_encoder):
    from lseg_encoder.runners import make_runner

    image = random_image(48, 64)
    recipe = get_recipe("openscene", backbone="tiny")
    with make_runner("torch", tiny_encoder) as runner:
        torch.testing.assert_close(recipe.run(image, runner.infer), recipe.run(image, tiny_encoder),
                                   rtol=0, atol=1e-5)


def test_keep_on_device_changes_no_value(tiny_encoder):
    # On this CPU-only machine "the device" is the CPU: this checks the option is accepted and that it
    # only skips the host copy; a CUDA forward is exercised by extract's GPU benchmark.
    image = random_image(48, 64)
    kept = get_recipe("openscene", backbone="tiny", keep_on_device=True).run(image, tiny_encoder)
    assert torch.equal(kept, get_recipe("openscene", backbone="tiny").run(image, tiny_encoder))


def test_params_are_json_and_name_every_recipe():
    import json

    assert list(RECIPES) == ["native", "lseg-multiscale", "openscene"]
    params = get_recipe("lseg-multiscale", scales=(0.75, 1.25)).params()
    assert json.loads(json.dumps(params)) == params == {
        "recipe": "lseg-multiscale", "backbone": "clip_vitl16_384", "scales": [0.75, 1.25], "base_size": 520,
        "crop_size": 480, "flip": True, "raw": False}
    assert get_recipe("openscene").params() == {"recipe": "openscene", "backbone": "clip_vitl16_384"}


@pytest.mark.parametrize("name, params, message", [
    ("no-such-recipe", {}, "unknown recipe 'no-such-recipe'; known: native, lseg-multiscale, openscene"),
    ("lseg-multiscale", {"scales": ()}, "scales is empty"),
    ("lseg-multiscale", {"scales": (1.0, -0.5)}, "scales must be positive"),
    ("lseg-multiscale", {"crop_size": 8}, "crop_size 8 does not work with clip_vitl16_384"),
    ("lseg-multiscale", {"crop_size": 500}, "try 480 or 512"),
    ("lseg-multiscale", {"base_size": 0}, "base_size must be a positive integer"),
    ("lseg-multiscale", {"max_batch": 0}, "max_batch must be a positive integer"),
    ("native", {"size": (480, 80)}, "not supported by clip_vitl16_384"),
    ("native", {"scales": (1.0,)}, "unexpected keyword argument 'scales'"),
    ("openscene", {"backbone": "no-such-backbone"}, "unknown backbone"),
])
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(LsegError) as info:
        get_recipe(name, **params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_openscene_refuses_images_it_would_misalign(tiny_encoder):
    recipe = get_recipe("openscene", backbone="tiny")
    with pytest.raises(LsegError, match=r"openscene: a 50x70 image needs crop 140.*long side is 64 or 80"):
        recipe.output_size(50, 70)
    with pytest.raises(LsegError, match="needs crop 140"):
        recipe.run(random_image(50, 70), tiny_encoder)


def test_bad_images_are_refused(tiny_encoder):
    recipe = get_recipe("openscene", backbone="tiny")
    with pytest.raises(LsegError, match="HxWx3"):
        recipe.run(np.zeros((48, 64), dtype=np.uint8), tiny_encoder)
    with pytest.raises(LsegError, match="uint8"):
        recipe.run(np.zeros((48, 64, 3), dtype=np.float32), tiny_encoder)
