"""`lseg-encoder cache`: list the cached artefacts with their sizes, or `--clear` them.

The cache fills up unannounced otherwise: with ViT-L/16 a synthetic checkpoint, fp32 and fp16
ONNX files and an engine come to about 5 GB. Everything in it is rebuilt on demand.
"""

from __future__ import annotations

import argparse
import os


def register(sub) -> None:
    from ..store.inventory import KINDS

    kinds = ", ".join(f"{k} ({v})" for k, v in KINDS.items())
    p = sub.add_parser("cache", help="list the cached artefacts (checkpoints, ONNX, engines, ...) or clear them",
                       description=f"{__doc__.splitlines()[0]}\n\nKinds: {kinds}. Location: $LSEG_CACHE_DIR, "
                       "else the user cache folder.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clear", nargs="?", const="all", choices=[*KINDS, "all"], metavar="KIND",
                   help="remove the cached artefacts of KIND (default: all kinds); asks nothing, prints what it "
                   "freed. Temps of running writers and lock files stay")
    p.set_defaults(func=run)


def size_text(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def run(args) -> int:
    from ..store.cache import cache_root
    from ..store.inventory import KINDS, cache_inventory, clear_cache

    root = cache_root()
    source = "$LSEG_CACHE_DIR" if os.environ.get("LSEG_CACHE_DIR") else "user cache; set LSEG_CACHE_DIR to move it"
    if args.clear:
        removed, refused = clear_cache(None if args.clear == "all" else args.clear)
        freed = sum(item.nbytes for item in removed)
        print(f"freed {size_text(freed)}: removed {len(removed)} artefact(s) from {root}")
        for entry in refused:
            print(f"not cleared: {entry.folder} ({KINDS[entry.kind]}, {size_text(entry.nbytes)}) is outside the "
                  "cache root")
        return 0
    print(f"cache: {root} ({source})")
    total = 0
    for entry in cache_inventory():
        total += entry.nbytes
        where = entry.folder.name + "/" if entry.inside_root else f"{entry.folder}, outside the root"
        print(f"{entry.kind:<10} {size_text(entry.nbytes):>9}  {KINDS[entry.kind]} ({where}), "
              f"{len(entry.items)} item(s)")
        for item in entry.items:
            note = f"  [{item.state}]" if item.state else ""
            print(f"{'':<10} {size_text(item.nbytes):>9}    {item.path.name}{note}")
    print(f"{'total':<10} {size_text(total):>9}  (`lseg-encoder cache --clear [KIND]` frees it; "
          "artefacts are rebuilt when needed)")
    return 0
