"""CLIP's byte-level BPE tokenizer, written from the published description (SPEC §9).

Why our own: LSeg checkpoints already carry the CLIP text tower, so the only thing missing for text
prompts is the tokenizer; pulling in `clip`/`open_clip` would drag torchvision and downloads along.
The vocabulary file (`bpe_simple_vocab_16e6.txt.gz`, MIT, OpenAI) ships as package data and is read
on first use, not at import time (`get_tokenizer()` is a cached factory).

Facts the ids depend on (all must match OpenAI's tokenizer exactly):
* cleaning: `ftfy.fix_text`, HTML-unescape twice, strip, collapse whitespace, lower-case;
* pre-tokenisation regex (the `regex` module for `\\p{L}`/`\\p{N}`), applied case-insensitively;
* every UTF-8 byte is first mapped to a printable stand-in character (`byte_alphabet`), the last
  symbol of a word gets the `</w>` suffix, then merges are applied lowest rank first;
* ids: 256 byte symbols, their 256 `</w>` variants, the first 48,894 merges, then SOT and EOT;
  a prompt is `[SOT] + ids + [EOT]`, zero-padded to the 77-token context.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import LabelError

CONTEXT_LENGTH = 77
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
SOT_TEXT, EOT_TEXT = "<|startoftext|>", "<|endoftext|>"
N_MERGES = 49152 - 256 - 2  # CLIP uses the first 48,894 merge rules of the file
END_OF_WORD = "</w>"
_PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
            r"[^\s\p{L}\p{N}]+")


def byte_alphabet() -> dict[int, str]:
    """Byte value -> the single character that stands for it in the BPE vocabulary.

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, a few Latin-1
    gaps) are shifted to code points 256, 257, ... in byte order, so that every symbol is a
    visible, non-whitespace character. The dict order is the vocabulary order of the 256 byte ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def clean_text(text: str) -> str:
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class Tokenizer:
    """Text -> CLIP token ids. Build it with `get_tokenizer()` (reads the vocabulary once)."""

    def __init__(self, merges: list[tuple[str, str]]):
        import regex

        self.byte_to_symbol = byte_alphabet()
        self.symbol_to_byte = {s: b for b, s in self.byte_to_symbol.items()}
        symbols = list(self.byte_to_symbol.values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
        self.token_to_id = {tok: i for i, tok in enumerate(vocab)}
        self.id_to_token = vocab
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.sot_id = self.token_to_id[SOT_TEXT]
        self.eot_id = self.token_to_id[EOT_TEXT]
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._word_cache: dict[str, tuple[str, ...]] = {SOT_TEXT: (SOT_TEXT,), EOT_TEXT: (EOT_TEXT,)}

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def _merge_word(self, word: str) -> tuple[str, ...]:
        """Apply BPE merges to one pre-token (already in byte-alphabet form)."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        parts = [*word[:-1], word[-1] + END_OF_WORD]
        while len(parts) > 1:
            # ranks are unique per pair, so the lowest-ranked pair is well defined
            best_rank, first, second = min(
                (self.merge_rank.get(pair, N_MERGES), *pair) for pair in zip(parts, parts[1:])
            )
            if best_rank >= N_MERGES:
                break
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the pair, left to right
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        result = tuple(parts)
        self._word_cache[word] = result
        return result

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` without SOT/EOT."""
        ids = []
        for piece in self._pattern.findall(clean_text(text)):
            word = "".join(self.byte_to_symbol[b] for b in piece.encode("utf-8"))
            ids.extend(self.token_to_id[tok] for tok in self._merge_word(word))
        return ids

    def decode_token(self, token_id: int) -> str:
        """The text a single id stands for (`</w>` becomes a trailing space; bytes decoded leniently)."""
        token = self.id_to_token[token_id]
        if token in (SOT_TEXT, EOT_TEXT):
            return token
        raw = bytes(self.symbol_to_byte[c] for c in token.replace(END_OF_WORD, ""))
        return raw.decode("utf-8", errors="replace") + (" " if token.endswith(END_OF_WORD) else "")

    def prompt_ids(self, text: str) -> list[int]:
        """[SOT] + ids + [EOT], unpadded; raises LabelError past the context length."""
        ids = [self.sot_id, *self.encode(text), self.eot_id]
        if len(ids) > CONTEXT_LENGTH:
            raise LabelError(f"label {text!r} is {len(ids)} tokens long with SOT/EOT; CLIP's text context "
                             f"holds {CONTEXT_LENGTH}")
        return ids

    def __call__(self, texts: list[str] | str, context_length: int = CONTEXT_LENGTH) -> np.ndarray:
        """Texts -> (N, context_length) int64 ids, zero-padded, as `clip.tokenize` returns them."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.prompt_ids(text)
            if len(ids) > context_length:
                raise LabelError(f"label {text!r} needs {len(ids)} tokens; the context holds {context_length}")
            out[row, : len(ids)] = ids
        return out


def read_merges() -> list[tuple[str, str]]:
    """The merge rules CLIP uses, from the packaged vocabulary file (checked by sha256)."""
    import hashlib

    data = resources.files("lseg_encoder").joinpath("data", VOCAB_FILE).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != VOCAB_SHA256:
        raise RuntimeError(f"packaged {VOCAB_FILE} has sha256 {digest}, expected {VOCAB_SHA256}; "
                           "the installation is damaged")
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]


@lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The shared tokenizer, built on first use (reading the vocabulary takes ~0.3 s)."""
    return Tokenizer(read_merges())


def tokenize(texts: list[str] | str, context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    return get_tokenizer()(texts, context_length)
