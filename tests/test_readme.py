"""Every `lseg-encoder ...` command and the Python snippet of README.md run as written.

The commands are extracted from the README itself (fenced shell blocks and inline code), so a new
example is tested the day it is added. Each runs on the `tiny` test configuration (`--backbone tiny`
is appended where the command takes it; synthetic weights), in a temporary directory, through
`cli.main`. Only where the command's defaults are sized for a GPU or for the whole CLIP vocabulary,
flags from `FAST` are appended, each with its reason. Optional `[PLACEHOLDER]` groups of a synopsis
are left out. A command that needs a file the test cannot have is skipped with the reason; one that
clears the cache runs against an empty temporary cache, never the real one.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# command -> (extra flags, why): defaults that are right for users but too slow for a 2-core CI box
FAST = {
    "bench": (["--sizes", "256", "--iterations", "2", "--warmup", "1", "--backends", "torch"],
              "bench's defaults time 6 sizes x 500 iterations x every backend (hours on a CPU)"),
    "wordfree": (["--max-words", "300"],
                 "encoding the whole 40k-word vocabulary takes ~6 min on 2 CPU cores before it is cached"),
}
# commands that cannot run as written anywhere in CI, and why (each is tested elsewhere)
NEEDS_INPUT = {
    "build": "needs --onnx FILE and a TensorRT builder (tests/test_engine.py builds engines)",
}


def readme_commands(text: str) -> list[str]:
    """`lseg-encoder ...` commands in fenced shell blocks (split at && and ;) and in inline code."""
    found = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
            for part in re.split(r"&&|;", line):
                if part.strip().startswith("lseg-encoder"):
                    found.append(part.strip())
    found += [m.strip() for m in re.findall(r"`(lseg-encoder[^`]*)`", text)]
    return list(dict.fromkeys(found))


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_commands_to_test():
    assert len(COMMANDS) >= 4 and any(c.startswith("lseg-encoder segment") for c in COMMANDS), COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(command, tmp_path, monkeypatch, capsys):
    from lseg_encoder.cli import build_parser, main

    argv = [a for a in shlex.split(command)[1:] if not re.fullmatch(r"\[[A-Z_]+\]", a)]
    if "--weights" in argv:
        weights = argv[argv.index("--weights") + 1]
        if not Path(weights).exists():
            pytest.skip(f"needs the real checkpoint {weights}, which CI does not have")
    if argv[0] in NEEDS_INPUT:
        pytest.skip(f"`{command}`: {NEEDS_INPUT[argv[0]]}")
    if "--device" in argv and argv[argv.index("--device") + 1].startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"`{command}` runs on a CUDA GPU; this machine has none")
    monkeypatch.chdir(tmp_path)
    if "--clear" in argv:
        monkeypatch.setenv("LSEG_CACHE_DIR", str(tmp_path / "cache"))
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    takes_backbone = "--backbone" in subcommands.choices[argv[0]].format_help()
    if takes_backbone and "--backbone" not in argv and "--weights" not in argv:
        argv += ["--backbone", "tiny"]
    argv += FAST.get(argv[0], ([], ""))[0]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, f"{command!r} (run as {argv}) failed:\n{err[-3000:]}"


def python_snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_snippet_runs_and_gives_plain_tensors(tmp_path, monkeypatch, tiny_checkpoint):
    from lseg_encoder.preprocess import sample_image_path

    snippets = python_snippets(README.read_text())
    assert snippets, "the README has no Python example"
    code = snippets[0]
    # the only substitutions: the user's files become the tiny synthetic checkpoint and the sample image
    code = code.replace('"demo_e200.ckpt"', repr(str(tiny_checkpoint))).replace('"photo.jpg"',
                                                                                repr(str(sample_image_path())))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    feats = scope["feats"]
    array = feats.numpy()  # the natural next step: must not need .detach()
    assert not feats.requires_grad
    shape = re.search(r"feats = enc\(x\)\s+# \((\d+),(\d+),(\d+),(\d+)\)", code)
    assert shape and array.shape == tuple(int(v) for v in shape.groups())
