"""Word-free segmentation: exact search vs brute force, vocabulary encoding and its disk cache, CLI.

Full-vocabulary encoding takes minutes on two cores, so these tests restrict the vocabulary with
`max_words`; the full run is measured by hand (docs/text.md).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from lseg_encoder.cli import main
from lseg_encoder.text import load_text_encoder
from lseg_encoder.text.tokenizer import tokenize
from lseg_encoder.text.vocabulary import cache_key, encode_prompts, vocabulary_embeddings, vocabulary_prompts
from lseg_encoder.weights.synthetic import fill_value, text_tower_layout
from lseg_encoder.wordfree import vocabulary_argmax, wordfree_features


@pytest.fixture
def vocab_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "vocab"


@pytest.fixture(scope="module")
def text_encoder(tiny_checkpoint):
    return load_text_encoder(tiny_checkpoint)


def smooth_features(h: int, w: int, channels: int, seed: int, roughness: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, channels, max(2, h // 8), max(2, w // 8), generator=g)
    feats = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    feats = feats + roughness * torch.randn(1, channels, h, w, generator=g)
    return (feats / feats.norm(dim=1, keepdim=True))[0]


def brute_force(feats: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = feats.flatten(1).T @ text.T
    top2 = scores.topk(2, dim=1).values
    return scores.argmax(dim=1).view(feats.shape[1:]), (top2[:, 0] - top2[:, 1]).view(feats.shape[1:])


@pytest.mark.parametrize("h, w, roughness, correlated", [
    (48, 48, 0.05, False),   # smooth, like LSeg features
    (37, 45, 0.05, True),    # size not a multiple of the tile; words sharing a big common component
    (32, 40, 1.0, False),    # pure noise: the search must degrade to brute force, not go wrong
])
def test_search_equals_brute_force(h, w, roughness, correlated):
    feats = smooth_features(h, w, 64, seed=h, roughness=roughness)
    g = torch.Generator().manual_seed(1)
    text = torch.randn(3000, 64, generator=g)
    if correlated:
        text = text + 4.0 * torch.randn(1, 64, generator=g)
    text = text / text.norm(dim=1, keepdim=True)
    fast = vocabulary_argmax(feats, text.half().float(), rank=16)
    best, gap = brute_force(feats, text.half().float())
    decided = gap > 1e-5  # exact ties may go either way under float rounding
    assert (fast[decided] == best[decided]).all()
    assert decided.float().mean() > 0.99


def test_words_are_sorted_by_area():
    # three regions: word 2 on 60% of the pixels, word 0 on 30%, word 1 on 10%
    region = torch.zeros(10, 10, dtype=torch.long)
    region[:, :6], region[:, 6:9], region[:, 9:] = 2, 0, 1
    feats = torch.nn.functional.one_hot(region, 8).permute(2, 0, 1)[None].float()
    vocab = type("V", (), {"words": ["zero", "one", "two"], "features": np.eye(3, 8, dtype=np.float16)})()
    result = wordfree_features(feats, vocab, (20, 20))
    assert result.words == ["two", "zero", "one"]
    assert result.label_map.shape == (20, 20)
    assert [round(result.fractions[w], 2) for w in result.words] == [0.6, 0.3, 0.1]


def test_vocabulary_prompts():
    words, prompts = vocabulary_prompts()
    assert 40_000 < len(words) < 49_406  # the 49,406 entries minus duplicate texts
    assert len(set(words)) == len(words) and len({tuple(p) for p in prompts}) == len(prompts)
    assert all(p[0] == 49406 and p[-1] == 49407 and len(p) >= 3 for p in prompts)
    assert "dog" in words and "cat" in words
    assert vocabulary_prompts(max_words=10)[0] == words[:10]


def test_fast_vocabulary_encoding_equals_plain_encoding(text_encoder):
    words, prompts = vocabulary_prompts(max_words=300)
    fast = encode_prompts(text_encoder, prompts, batch_size=64, progress=False)
    plain = text_encoder.encode_ids(tokenize(words)).numpy()
    assert np.abs(fast - plain).max() < 1e-5


def test_vocabulary_cache_is_used_and_faster(text_encoder, vocab_cache):
    t0 = time.perf_counter()
    first = vocabulary_embeddings(text_encoder, max_words=1500, progress=False)
    t1 = time.perf_counter()
    second = vocabulary_embeddings(text_encoder, max_words=1500, progress=False)
    t2 = time.perf_counter()
    assert not first.from_cache and second.from_cache
    assert first.path == second.path and first.path.parent == vocab_cache
    assert first.features.dtype == np.float16 and first.features.shape == (1500, 512)
    np.testing.assert_array_equal(first.features, second.features)
    assert first.words == second.words
    assert (t2 - t1) < (t1 - t0) / 3, f"cached {t2 - t1:.2f}s vs encoding {t1 - t0:.2f}s"


def test_cache_key_changes_with_the_weights(text_encoder, vocab_cache):
    state1 = {k: fill_value(k, s, 1) for k, s, _ in text_tower_layout()}  # synthetic offset 1
    other = load_text_encoder(state1)
    assert other.digest != text_encoder.digest
    assert cache_key(other, 50) != cache_key(text_encoder, 50)
    a = vocabulary_embeddings(text_encoder, max_words=50, progress=False)
    b = vocabulary_embeddings(other, max_words=50, progress=False)
    assert not b.from_cache and a.path != b.path
    assert np.abs(a.features.astype(np.float32) - b.features.astype(np.float32)).max() > 0.01


def test_cli_wordfree_caches_and_reports(tmp_path, tiny_checkpoint, vocab_cache, capsys):
    out = tmp_path / "wf.png"
    args = ["wordfree", "--backbone", "tiny", "--size", "128", "--max-words", "800", "--output", str(out)]
    assert main(args) == 0
    first = json.loads(out.with_suffix(".json").read_text())
    assert main(args) == 0
    second = json.loads(out.with_suffix(".json").read_text())
    assert first["vocabulary_from_cache"] is False and second["vocabulary_from_cache"] is True
    assert second["seconds"]["vocabulary"] < first["seconds"]["vocabulary"]
    assert first["labels"] == second["labels"] and first["vocabulary_size"] == 800
    fractions = [second["fractions"][w] for w in second["labels"]]
    assert fractions == sorted(fractions, reverse=True) and sum(fractions) == pytest.approx(1.0)
    assert second["image_size"] == [300, 451]
    assert "(cache)" in capsys.readouterr().err
