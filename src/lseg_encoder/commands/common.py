"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import sys


def add_weights_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="LSeg checkpoint (.ckpt/.pt/.pth/.safetensors); "
                        "omitted: clearly-labelled SYNTHETIC weights (cached)")
    from .validate import PUBLIC_BACKBONES, backbone_name

    parser.add_argument("--backbone", type=backbone_name, metavar="{" + ",".join(PUBLIC_BACKBONES) + "}",
                        help="backbone (default: inferred from the checkpoint; clip_vitl16_384 for synthetic weights)")


def resolve_weights(args) -> str:
    """The checkpoint path to use; warns loudly when falling back to synthetic weights."""
    from ..weights.choice import resolve_weights as choose

    return choose(args.weights, args.backbone, flag="--weights")


def device_arg(text: str) -> str:
    """The argparse type of every `--device` flag: cpu, cuda or cuda:N, checked before any work, so
    a bad name is a usage line and not a traceback from deep inside a run."""
    from ..devices import parse_cli_device
    from ..errors import LsegError

    try:
        parse_cli_device(text)
    except LsegError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def size_type(parse):
    """An argparse type from one of `sizes`' parsers: its message becomes the usage error."""
    def convert(text: str):
        from ..errors import InputSizeError

        try:
            return parse(text)
        except InputSizeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def add_size_arg(parser: argparse.ArgumentParser, default: str, help: str = "input size") -> None:
    """The one spelling of a size: `--size N|HxW`."""
    from ..sizes import parse_size

    parser.add_argument("--size", type=size_type(parse_size), default=parse_size(default), metavar="N|HxW",
                        help=f"{help}, N or HxW (default {default})")


def add_sizes_arg(parser: argparse.ArgumentParser, default: list[str] | None, *aliases: str,
                  help: str = "input sizes") -> None:
    """The one spelling of a list of sizes: `--sizes N|HxW ...` (plus aliases kept for old scripts)."""
    from ..sizes import parse_size

    shown = " ".join(default) if default else "see below"
    parser.add_argument("--sizes", *aliases, dest="sizes", nargs="+", type=size_type(parse_size), metavar="N|HxW",
                        default=[parse_size(s) for s in default] if default else None,
                        help=f"{help}, each N or HxW (default {shown})")


def add_shape_arg(parser: argparse.ArgumentParser, *flags: str, **kwargs) -> None:
    """The one spelling of a static artefact's input shape: BxHxW."""
    from ..sizes import parse_shape

    parser.add_argument(*flags, type=size_type(parse_shape), metavar="BxHxW", **kwargs)


def backend_list(text: str) -> list[str]:
    """'torch,onnxruntime' -> names, each checked against the backend table."""
    from ..backends import check_backends
    from ..errors import LsegError

    names = list(dict.fromkeys(n.strip() for n in text.replace(" ", ",").split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError("no backend given")
    try:
        return check_backends(names)
    except LsegError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def say(msg: str) -> None:
    """Progress lines go to stderr, so stdout carries only results."""
    print(msg, file=sys.stderr, flush=True)
