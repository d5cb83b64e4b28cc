"""`lseg-encoder wordfree`: label every pixel with its best word of the whole CLIP vocabulary.

The vocabulary features are computed once per text tower and cached (`text.vocabulary`); the
first run on new weights takes minutes on a CPU, later runs load them in well under a second.
"""

from __future__ import annotations

import sys
import time

from .segment import add_common_args, describe, make_runner, prepare, write_outputs


def register(sub) -> None:
    p = sub.add_parser("wordfree", help="word-free segmentation over the whole CLIP vocabulary (PNG + JSON)")
    add_common_args(p)
    p.add_argument("--max-words", type=int, default=None,
                   help="use only the first N vocabulary words (quick looks and tests; default: all)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the vocabulary cache")
    p.add_argument("--top", type=int, default=20, help="legend entries in the PNG (default 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import LsegError
    from ..preprocess import load_image, preprocess
    from ..text import load_text_encoder
    from ..text.vocabulary import vocabulary_embeddings
    from ..wordfree import wordfree_features
    from .common import resolve_weights

    if args.max_words is not None and args.max_words < 1:
        raise LsegError(f"--max-words must be at least 1, got {args.max_words}")
    if args.top < 1:
        raise LsegError(f"--top must be at least 1, got {args.top}")
    output, image_path, _ = prepare(args, "wordfree")
    pil = load_image(image_path, args.max_pixels)
    weights = resolve_weights(args)
    runner = make_runner(args.backend, weights, args.backbone, args.device, tuple(args.size))
    text_encoder = load_text_encoder(weights)
    t0 = time.perf_counter()
    vocab = vocabulary_embeddings(text_encoder, max_words=args.max_words, cache=not args.no_cache,
                                  progress=True)
    t_vocab = time.perf_counter() - t0
    with runner:
        feats = runner.infer(preprocess(pil, args.size, runner.config))
    t1 = time.perf_counter()
    result = wordfree_features(feats, vocab, (pil.height, pil.width))
    t_search = time.perf_counter() - t1
    meta = describe(args, weights, runner, text_encoder, image_path, pil)
    meta.update(vocabulary_cache=str(vocab.path) if vocab.path else None, vocabulary_from_cache=vocab.from_cache,
                seconds={"vocabulary": round(t_vocab, 3), "search": round(t_search, 3)})
    title = (f"word-free, {len(vocab.words):,} words: {runner.config.name} / {runner.backend}"
             + ("  (SYNTHETIC weights)" if text_encoder.synthetic else ""))
    png, js = write_outputs(pil, result, output, meta, title, max_legend=args.top)
    source = "cache" if vocab.from_cache else ("encoded, cached" if vocab.path else "encoded")
    print(f"vocabulary: {len(vocab.words)} words ({source}) in {t_vocab:.2f} s; search {t_search:.2f} s",
          file=sys.stderr)
    top = ", ".join(f"{w} {100 * result.fractions[w]:.1f}%" for w in result.words[:10])
    print(f"wrote {png} and {js}; {len(result.words)} words found, largest: {top}", file=sys.stderr)
    return 0
