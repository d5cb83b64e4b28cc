"""Text features of the whole CLIP vocabulary, computed once per text tower and cached on disk.

Word-free segmentation scores every pixel against every vocabulary entry. The entries are the
49,406 non-special BPE tokens, each decoded to text (`</w>` dropped, stripped) and tokenized again as
a prompt, as the seed does. Entries whose text is identical, or that tokenize to the same ids, get
bit-identical features, so each distinct prompt is encoded once (40,579 of them); entries that
decode to no token at all (e.g. a lone control byte) are dropped.

Speed (see docs/text.md): prompts are 2-6 tokens, so they are bucketed by length and each bucket
runs only its own context (never the padded 77), with the SOT position's keys/values shared by every
prompt and the last block evaluated at the EOT query only (`TextTransformer.forward_same_length`).

Cache: `cache_dir("vocab") / <key>.npz` (fp16 unit-norm rows and the word list), where the key
is a sha256 of the text-tower weights (`TextEncoder.digest`), the vocabulary file, `max_words`
and `FORMAT` (which fixes the word-selection rule). Files are written atomically under a file lock.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .encoder import TextEncoder
from .tokenizer import SOT_TEXT, VOCAB_SHA256, get_tokenizer

FORMAT = "lseg-vocab-v1"  # bump when the word list or the encoding changes meaning


def vocabulary_prompts(max_words: int | None = None) -> tuple[list[str], list[list[int]]]:
    """(words, prompt ids) for the distinct vocabulary entries, in token-id order.

    `max_words` keeps only the first entries (tests and quick looks; the real use is all of them).
    """
    tok = get_tokenizer()
    words, prompts, seen = [], [], set()
    for token_id in range(tok.sot_id):
        word = tok.decode_token(token_id).strip()
        if not word or word in seen:
            continue
        seen.add(word)
        ids = tok.prompt_ids(word)
        if len(ids) <= 2 or tuple(ids) in seen:
            continue
        seen.add(tuple(ids))
        words.append(word)
        prompts.append(ids)
        if max_words is not None and len(words) >= max_words:
            break
    return words, prompts


@torch.inference_mode()
def encode_prompts(encoder: TextEncoder, prompts: list[list[int]], batch_size: int = 1024,
                   progress: bool = True) -> np.ndarray:
    """Unit-norm features (N, 512) float32 of prompts `[SOT, ..., EOT]` of any lengths."""
    from ..progress import progress as progress_bar

    model = encoder.model
    sot = prompts[0][0] if prompts else 0
    if any(p[0] != sot for p in prompts):
        raise ValueError("all prompts must start with the same SOT token")
    prefix = model.prefix_cache(torch.tensor([[sot]], device=encoder.device))
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)].append(i)
    out = np.empty((len(prompts), model.config.embed_dim), dtype=np.float32)
    with progress_bar(len(prompts), "encoding vocabulary", "word", enabled=progress) as bar:
        for length in sorted(by_length):
            rows = by_length[length]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                ids = torch.tensor([prompts[i][1:] for i in chunk], device=encoder.device)
                feats = model.forward_same_length(ids, prefix).float()
                out[chunk] = (feats / feats.norm(dim=-1, keepdim=True)).cpu().numpy()
                bar.update(len(chunk))
    return out


@dataclass
class VocabularyEmbeddings:
    words: list[str]
    features: np.ndarray  # (N, 512) float16, unit-norm rows
    key: str
    path: Path | None  # the cache file, if cached
    from_cache: bool


def cache_key(encoder: TextEncoder, max_words: int | None = None) -> str:
    """The word list is a pure function of the vocabulary file, the selection rule (`FORMAT`) and
    `max_words`, so the key needs no tokenizing: a warm lookup stays fast."""
    h = hashlib.sha256()
    for part in (FORMAT, encoder.digest, VOCAB_SHA256, SOT_TEXT, str(max_words)):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def vocabulary_embeddings(encoder: TextEncoder, *, max_words: int | None = None, cache: bool = True,
                          progress: bool = True, batch_size: int = 1024) -> VocabularyEmbeddings:
    """Features of every vocabulary word for this text tower: from the disk cache, or computed once."""
    key = cache_key(encoder, max_words)
    if not cache:
        words, prompts = vocabulary_prompts(max_words)
        feats = encode_prompts(encoder, prompts, batch_size, progress).astype(np.float16)
        return VocabularyEmbeddings(words, feats, key, None, False)
    from ..store.cache import cached_artifact

    def build(tmp: Path) -> None:
        words, prompts = vocabulary_prompts(max_words)
        feats = encode_prompts(encoder, prompts, batch_size, progress).astype(np.float16)
        meta = {"format": FORMAT, "key": key, "text_weights_sha256": encoder.digest, "max_words": max_words,
                "words": words}
        with open(tmp, "wb") as f:
            np.savez(f, features=feats, meta=np.array(json.dumps(meta, ensure_ascii=False)))
        built.append((words, feats))

    def verify(path: Path) -> None:
        words, feats = _read(path)
        if feats.shape != (len(words), encoder.config.embed_dim):
            raise ValueError(f"{path}: {feats.shape} features for {len(words)} words")

    built: list = []
    path = cached_artifact("vocab", {"vocabulary_key": key}, build, ".npz", name=f"{key[:40]}.npz", verify=verify)
    words, feats = built[0] if built else _read(path)
    return VocabularyEmbeddings(words, feats, key, path, not built)


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))["words"], data["features"]
