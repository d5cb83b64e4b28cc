"""The TensorRT API conformance check (mypy against tensorrt-stubs) passes, and it bites.

TensorRT cannot execute here, so `scripts/trt_typecheck.py` checks `engine/` and the TensorRT runner
against the TensorRT 10.13 API shape. These tests run it on the real files (zero errors) and on a
scratch copy of the package with wrong TensorRT names, which must each be reported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "trt_typecheck.py"
CHECKED = ("lseg_encoder/engine", "lseg_encoder/runners/tensorrt_runner.py")


def _missing_tool() -> str | None:
    if importlib.util.find_spec("mypy") is None:
        return "mypy is not installed (pip install mypy)"
    try:
        importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        return "tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)"
    return None


pytestmark = pytest.mark.skipif(_missing_tool() is not None, reason=str(_missing_tool()))

# (file under src/lseg_encoder, the right text, a wrong TensorRT name, what mypy must say about it)
MUTATIONS = (
    ("engine/build.py", "config.set_memory_pool_limit(m.MemoryPoolType.WORKSPACE,",
     "config.set_memory_pool_limit(m.MemoryPoolType.WORKSPACES,", 'has no attribute "WORKSPACES"'),
    ("engine/build.py", "builder.build_serialized_network(network, config)",
     "builder.build_serialised_network(network, config)", 'has no attribute "build_serialised_network"'),
    ("runners/tensorrt_runner.py", "context.execute_async_v3(", "context.execute_async_v4(",
     'has no attribute "execute_async_v4"'),
    ("engine/backend.py", "OnnxParser: type[tensorrt.OnnxParser]", "OnnxParser: type[tensorrt.OnnxParsr]",
     'Name "tensorrt.OnnxParsr" is not defined'),
)


def _typecheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_engine_and_runner_conform_to_the_tensorrt_api():
    result = _typecheck()
    assert result.returncode == 0, result.stdout + result.stderr
    checked = len(list((ROOT / "src" / "lseg_encoder" / "engine").glob("*.py"))) + 1  # + the runner
    assert f"Success: no issues found in {checked} source files" in result.stdout


def test_wrong_tensorrt_names_are_reported(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "lseg_encoder", src / "lseg_encoder",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name, right, wrong, _ in MUTATIONS:
        path = src / "lseg_encoder" / name
        text = path.read_text()
        assert text.count(right) == 1, f"{name} no longer contains {right!r} once; update MUTATIONS"
        path.write_text(text.replace(right, wrong))
    result = _typecheck("--cache-dir", str(tmp_path / "mypy-cache"), *(str(src / p) for p in CHECKED))
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    for name, _, _, message in MUTATIONS:
        hits = [line for line in errors if line.startswith(str(src / "lseg_encoder" / name)) and message in line]
        assert hits, f"mypy did not report {message!r} in {name}:\n{result.stdout}"
    assert len(errors) == len(MUTATIONS), result.stdout
