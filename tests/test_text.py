"""CLIP text side: tokenizer ids and text features against the original code's outputs.

Golden data: tests/data/clip_text_vitb32.npz (see tests/data/README.md). The fill rule gives the
same weights the reference used, so features must match to float32 rounding (observed ~2e-6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lseg_encoder.errors import CheckpointError, LabelError
from lseg_encoder.text import get_tokenizer, load_text_encoder, tokenize
from lseg_encoder.weights.synthetic import fill_value, text_tower_layout

GOLDEN = Path(__file__).parent / "data" / "clip_text_vitb32.npz"
FEATURE_ATOL = 1e-4  # SPEC: smallest plausible mistake (LN eps) moves features by 6e-3
DTYPES = {"float32": torch.float32, "float16": torch.float16}


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.exists():
        pytest.skip(f"golden text data missing: {GOLDEN} (copy it from ../shared/reference)")
    return np.load(GOLDEN)


def text_state(offset: int, checkpoint_dtypes: bool) -> dict[str, torch.Tensor]:
    """Only the `net.clip_pretrained.*` text-tower tensors, filled as the reference did."""
    return {key: fill_value(key, shape, offset).to(DTYPES[dtype] if checkpoint_dtypes else torch.float32)
            for key, shape, dtype in text_tower_layout()}


@pytest.fixture(scope="module")
def fp32_encoder(golden):
    return load_text_encoder(text_state(int(golden["fill_offset"]), checkpoint_dtypes=False))


def test_token_ids_match_reference_exactly(golden):
    ids = tokenize([str(p) for p in golden["prompts"]])
    assert ids.dtype == np.int64 and ids.shape == (4, 77)
    np.testing.assert_array_equal(ids, golden["token_ids"])


@pytest.mark.parametrize("text, expected", [
    ("dog", [49406, 1929, 49407]),
    ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407]),
    ("  A   PHOTO of a CAT ", [49406, 320, 1125, 539, 320, 2368, 49407]),  # cleaning: case, whitespace
])
def test_token_ids_of_documented_examples(text, expected):
    ids = tokenize([text])[0]
    assert ids[: len(expected)].tolist() == expected and not ids[len(expected):].any()


def test_tokenizer_vocabulary_layout():
    tok = get_tokenizer()
    assert tok.vocab_size == 49408 and tok.sot_id == 49406 and tok.eot_id == 49407
    assert get_tokenizer() is tok  # cached factory: the vocabulary is read once


def test_fp32_features_match_reference(golden, fp32_encoder):
    feats = fp32_encoder.encode_ids(golden["token_ids"], normalize=False).numpy()
    err = np.abs(feats - golden["text_features"]).max()
    assert err <= FEATURE_ATOL, f"max |diff| {err:.3g} > {FEATURE_ATOL}"


def test_fp16_stored_checkpoint_matches_rounded_weights_reference(golden, tiny_checkpoint):
    """The synthetic tiny checkpoint stores CLIP tensors in fp16, like the real ones; we upcast them,
    so the result must equal the reference computed with fp16-rounded weights (and not the fp32 one)."""
    enc = load_text_encoder(tiny_checkpoint)
    feats = enc.encode_ids(golden["token_ids"], normalize=False).numpy()
    err = np.abs(feats - golden["text_features_fp16_rounded_weights"]).max()
    assert err <= FEATURE_ATOL, f"max |diff| {err:.3g} > {FEATURE_ATOL}"
    assert np.abs(feats - golden["text_features"]).max() > 10 * FEATURE_ATOL  # the variants are distinguishable
    assert enc.synthetic


def test_encode_text_is_unit_norm_and_uses_the_tokenizer(golden, fp32_encoder):
    feats = fp32_encoder.encode_text([str(p) for p in golden["prompts"]])
    assert feats.shape == (4, 512) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(4), atol=1e-6, rtol=0)
    ref = torch.from_numpy(golden["text_features"])
    torch.testing.assert_close(feats, ref / ref.norm(dim=1, keepdim=True), atol=1e-5, rtol=0)


def test_bare_openai_clip_state_dict_is_accepted(golden):
    lseg = text_state(0, checkpoint_dtypes=False)
    bare = {k.removeprefix("net.clip_pretrained."): v for k, v in lseg.items()}
    bare["visual.proj"] = torch.zeros(768, 512)  # a full CLIP state dict also has the image tower
    enc = load_text_encoder(bare)
    feats = enc.encode_ids(golden["token_ids"], normalize=False).numpy()
    assert np.abs(feats - golden["text_features"]).max() <= FEATURE_ATOL
    assert enc.digest == load_text_encoder(lseg).digest  # same weights, same cache key


def test_short_context_equals_full_context(fp32_encoder, golden):
    """Causal mask: trimming the padded context after EOT must not change the features."""
    ids = torch.from_numpy(golden["token_ids"])
    model = fp32_encoder.model
    with torch.inference_mode():
        # alone, each prompt runs only its own length; in the batch, the short ones carry padding
        # up to the longest prompt's EOT: the padding positions must not leak into earlier ones
        full = torch.stack([model(ids[i : i + 1]) for i in range(4)])[:, 0]
        trimmed = model(ids)
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=0)


def test_too_long_label_is_refused():
    with pytest.raises(LabelError, match="77"):
        tokenize(["word " * 80])


def test_missing_text_tower_is_a_clear_error(tmp_path):
    path = tmp_path / "no_clip.pt"
    torch.save({"state_dict": {"net.scratch.head1.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="text tower"):
        load_text_encoder(path)
    broken = text_state(0, checkpoint_dtypes=False)
    del broken["net.clip_pretrained.ln_final.weight"]
    with pytest.raises(CheckpointError, match="missing: ln_final.weight"):
        load_text_encoder(broken)
