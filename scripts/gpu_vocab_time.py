"""Time the full-vocabulary text encoding (word-free segmentation's cache fill) on the GPU.

Usage on the GPU machine: PYTHONPATH=src LSEG_CACHE_DIR=/tmp/x python3 scripts/gpu_vocab_time.py
"""

import time

import torch

from lseg_encoder.text import load_text_encoder
from lseg_encoder.text.vocabulary import vocabulary_embeddings
from lseg_encoder.weights.synthetic import default_synthetic_checkpoint

ckpt = default_synthetic_checkpoint("tiny")  # carries the real-size CLIP ViT-B/32 text tower
text = load_text_encoder(ckpt, device="cuda")
text.encode_text(["warm-up"])
torch.cuda.synchronize()
t0 = time.perf_counter()
vocab = vocabulary_embeddings(text, cache=False)
torch.cuda.synchronize()
print(f"full vocabulary on {torch.cuda.get_device_name()}: {len(vocab.words)} words in "
      f"{time.perf_counter() - t0:.2f} s (torch {torch.__version__})")
