"""TensorRT API conformance: mypy over `engine/` and the TensorRT runner, against `tensorrt-stubs`.

TensorRT cannot execute on the machines this project is tested on, so the code that drives its
Python API is checked against the API's shape instead: `tensorrt-stubs` is the TensorRT 10.13 API as
`.pyi` files (install it with `pip install --no-deps tensorrt-stubs`: its `tensorrt` dependency is
NVIDIA's sdist, which cannot install here).

mypy cannot use those files as installed. They carry no `py.typed`, and pybind11-stubgen wrote a few
lines that are not Python: parameters named `in` (a keyword) and one parameter without a default
after defaulted ones. The first of them stops mypy. This script copies the stubs to
`build/trt-stubs/` (the `mypy_path` in pyproject.toml) with exactly those lines repaired. Every
repair must apply, and the result must parse, so a changed upstream release is noticed, not masked.
It then runs mypy with the `[tool.mypy]` settings of pyproject.toml; any arguments replace its file
list (the conformance test checks a scratch copy that way).

usage: python scripts/trt_typecheck.py [mypy arguments or files]
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS_OUT = ROOT / "build" / "trt-stubs"
DISTRIBUTION = "tensorrt-stubs"

# (file, pattern, replacement, why): each must match at least once.
REPAIRS = (
    ("tensorrt_bindings/tensorrt.pyi", r"(?<=[(,] )in(?=: )", "in_",
     "plugin methods name a parameter `in`, a Python keyword"),
    ("tensorrt_bindings/tensorrt.pyi", r"(def add_scale_nd\(.*power: Weights = None, channel_axis: int)\)",
     r"\1 = ...)", "add_scale_nd has `channel_axis` without a default after defaulted parameters"),
    ("tensorrt_bindings/tensorrt.pyi", r"(?<=[:>\[,|] )bool\b|(?<=\[)bool\b",
     "builtins.bool", "the module attribute `bool: DataType` shadows the builtin in every annotation"),
    ("tensorrt_bindings/tensorrt.pyi", r"\Afrom __future__ import annotations\n",
     "from __future__ import annotations\nimport builtins\n", "the builtins.bool repair needs the import"),
)


class StubsError(Exception):
    pass


def installed_stubs() -> dict[str, Path]:
    """Relative name -> installed path of every .pyi file of the tensorrt-stubs distribution."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise StubsError(f"{DISTRIBUTION} is not installed; install it with "
                         f"`pip install --no-deps {DISTRIBUTION}`") from None
    files = {str(f): Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).endswith(".pyi")}
    if "tensorrt/__init__.pyi" not in files:
        raise StubsError(f"{DISTRIBUTION} {dist.version} has no tensorrt/__init__.pyi; its layout changed")
    return files


def repaired_stubs(out: Path = STUBS_OUT) -> Path:
    """Write the stubs, repaired, under `out` (only files whose content changed); return `out`."""
    sources = {name: path.read_text() for name, path in installed_stubs().items()}
    for name, pattern, replacement, why in REPAIRS:
        text, count = re.subn(pattern, replacement, sources.get(name, ""))
        if count == 0:
            raise StubsError(f"repair not applicable to {name} ({why}): the stubs changed; review REPAIRS in "
                             f"{Path(__file__).name}")
        sources[name] = text
    for name, text in sources.items():
        try:
            ast.parse(text, filename=name)
        except SyntaxError as exc:
            raise StubsError(f"{name}:{exc.lineno}: still not Python after the repairs ({exc.msg}); "
                             f"add a repair to {Path(__file__).name}") from None
        target = out / name
        if target.is_file() and target.read_text() == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False) as tmp:
            tmp.write(text)
        os.replace(tmp.name, target)
    return out


def main(argv: list[str]) -> int:
    try:
        repaired_stubs()
    except StubsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return subprocess.run([sys.executable, "-m", "mypy", *argv], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
