"""`lseg-encoder` command line: a thin layer over the API.

Each subcommand lives in `lseg_encoder.commands.<name>` and exposes `register(subparsers)`, which
adds its parser and sets `func`. Errors caused by input (`LsegError`) or by the environment
(`OSError`: a full disk, a missing permission) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import LsegError

COMMANDS = (
    "features", "extract", "segment", "wordfree", "export", "build", "compare", "verify", "bench", "package_aoti",
    "cache",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lseg-encoder", description=__doc__.splitlines()[0])
    from . import __version__

    parser.add_argument("--version", action="version", version=f"lseg-encoder {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue  # command not part of this build
            raise
        module.register(sub)
    for subparser in sub.choices.values():  # so that main() can report errors with the subcommand's usage
        subparser.set_defaults(subparser=subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # the top-level parser would print its own usage; the subcommand's is the useful one
            args.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse printed the usage error (or --help): hand its code back
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except LsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment (disk, permissions), not a bug: writers name their target
        from .store.atomic import describe_os_error

        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
