"""CLIP ViT-B/32 text side of LSeg: tokenizer (package-data vocabulary) and the text transformer,
loaded from the `clip_pretrained.*` tensors every LSeg checkpoint carries."""

from .encoder import TextEncoder, load_text_encoder, weights_digest
from .tokenizer import CONTEXT_LENGTH, Tokenizer, get_tokenizer, tokenize

__all__ = ["CONTEXT_LENGTH", "TextEncoder", "Tokenizer", "get_tokenizer", "load_text_encoder", "tokenize",
           "weights_digest"]
