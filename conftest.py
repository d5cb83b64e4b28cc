"""Top-level pytest configuration: markers, the artefact cache, and shared session fixtures.

Expensive artefacts (synthetic checkpoints, ONNX files, engines) are built once and cached on disk
under `.artifact-cache/` (or `$LSEG_CACHE_DIR`), keyed by what determines them, so a second test run
reuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("LSEG_CACHE_DIR", str(ROOT / ".artifact-cache"))

MARKERS = {
    "fidelity": "asserts cosine / L2 / label agreement of an artefact against the PyTorch fp32 encoder",
    "benchmark": "latency measurement (pytest-benchmark); run with --benchmark-only",
    "gpu": "needs a CUDA GPU; skipped with the reason elsewhere",
    "trt": "TensorRT / TensorRT-RTX engine build or execution",
    "slow": "full-size ViT-L/16 work (tens of seconds on 2 cores)",
    "cpp": "builds and runs the C++ runner",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.fixture
def without_cuda():
    """Skips (at run time, never at collection) where CUDA is available: for tests of the no-CUDA path."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the no-CUDA path; run it on a machine without CUDA")


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    from lseg_encoder.weights.synthetic import default_synthetic_checkpoint

    return default_synthetic_checkpoint("tiny")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_checkpoint):
    from lseg_encoder import load_encoder

    return load_encoder(tiny_checkpoint)


@pytest.fixture(scope="session")
def vitl16_checkpoint() -> Path:
    """The full-size synthetic ViT-L/16 checkpoint (~1.3 GB, written once into the cache)."""
    from lseg_encoder.weights.synthetic import default_synthetic_checkpoint

    return default_synthetic_checkpoint("clip_vitl16_384")


@pytest.fixture(scope="session")
def vitl16_encoder(vitl16_checkpoint):
    from lseg_encoder import load_encoder

    return load_encoder(vitl16_checkpoint)


def pytest_addoption(parser):
    group = parser.getgroup("lseg-encoder fidelity")
    group.addoption("--fidelity-device", default="cpu", help="device for torch/compiled backends (cpu or cuda)")
    group.addoption("--fidelity-backbone", default=None,
                    help="run the fidelity matrix for this backbone only (default: tiny + clip_vitl16_384 subset)")
    group.addoption("--fidelity-sizes", default=None, help="comma-separated sizes N or HxW (default per device)")
    group.addoption("--fidelity-backends", default=None, help="comma-separated backends (default per device)")
    group.addoption("--fidelity-report", default=None, help="write the fidelity table (markdown + json) here")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the project's machine record (CPU, GPU, driver, CUDA, torch/ORT/TensorRT versions)."""
    from lseg_encoder.suites.timing import machine_info as lseg_machine_info

    machine_info["lseg_encoder"] = lseg_machine_info()
