"""Golden tests: our encoder on the synthetic checkpoint reproduces the official LSeg outputs.

Weights go through the real path: `synthetic_checkpoint` writes a Lightning `.ckpt` with real
dtypes and `load_encoder` reads it. The forward runs once per case; every stage is a separate test
so a failure names the stage that diverged (tokens -> layer -> path -> head1 -> output).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _golden import INTERMEDIATE_RTOL, OUTPUT_ATOL, reference, reference_input, summaries

CASES = {
    "lseg_clip_vitl16_384_384x384": "clip_vitl16_384",
    "lseg_clip_vitl16_384_320x480": "clip_vitl16_384",
    "lseg_clip_vitl16_384_260x260": "clip_vitl16_384",
    "lseg_zs_clip_resnet101_320x480": "clip_resnet101",
}
VIT_STAGES = [f"tokens_{i}" for i in range(1, 5)]
STAGES = [f"layer_{i}" for i in range(1, 5)] + [f"path_{i}" for i in range(4, 0, -1)] + ["head1"]
_RUNS: dict[str, dict[str, torch.Tensor]] = {}


@pytest.fixture(scope="module")
def encoders(request):
    cache = {}

    def get(backbone: str):
        if backbone not in cache:
            cache[backbone] = request.getfixturevalue(
                "vitl16_encoder" if backbone == "clip_vitl16_384" else "rn101_encoder")
        return cache[backbone]

    return get


@pytest.fixture(scope="session")
def rn101_encoder():
    from lseg_encoder import default_synthetic_checkpoint, load_encoder

    return load_encoder(default_synthetic_checkpoint("clip_resnet101"))


def run_case(case: str, encoders) -> dict[str, torch.Tensor]:
    if case not in _RUNS:
        ref = reference(case)
        assert int(ref["fill_offset"]) == 0
        encoder = encoders(CASES[case])
        assert encoder.synthetic
        x = reference_input(ref)
        assert abs(x.double().sum().item() - float(ref["input_sum"])) < 1e-6
        np.testing.assert_array_equal(x.flatten()[:8].numpy(), ref["input_first8"])
        with torch.inference_mode():
            _RUNS[case] = encoder.forward_intermediates(x)
    return _RUNS[case]


def _cases_and_stages():
    for case, backbone in CASES.items():
        stages = (VIT_STAGES if backbone != "clip_resnet101" else []) + STAGES
        for stage in stages:
            yield pytest.param(case, stage, id=f"{case}-{stage}")


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_output_matches_official(case, encoders):
    ref = reference(case)
    out = run_case(case, encoders)["output"]
    assert tuple(out.shape) == tuple(int(s) for s in ref["output_shape"])
    ours = summaries("output", out, ref)
    for key in ("output.pixels", "output.proj16", "output.chanmean", "output.proj16_pool4"):
        err = float(np.abs(ours[key] - ref[key]).max())
        assert err <= OUTPUT_ATOL, f"{case}: {key} max|diff| {err:.2e} > {OUTPUT_ATOL:.0e}"
    norms = out[0].double().norm(dim=0)
    assert abs(float(norms.mean()) - float(ref["output.pixel_norms_check"][0])) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize(("case", "stage"), list(_cases_and_stages()))
def test_intermediate_matches_official(case, stage, encoders):
    ref = reference(case)
    tensor = run_case(case, encoders)[stage]
    assert tuple(tensor.shape) == tuple(int(s) for s in ref[f"{stage}.shape"]), f"{stage} shape"
    ours = summaries(stage, tensor, ref)
    assert ours, f"no comparable summaries for {stage}"
    for key, value in ours.items():
        scale = float(np.abs(ref[key]).max())
        err = float(np.abs(value - ref[key]).max())
        assert err <= INTERMEDIATE_RTOL * scale, (
            f"{case}: stage {stage} diverged: {key} max|diff| {err:.2e} > {INTERMEDIATE_RTOL:.0e} * {scale:.3g}")
