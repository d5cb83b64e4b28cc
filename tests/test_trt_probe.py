"""The TensorRT probe against a stubs-only `tensorrt` package.

`pip install tensorrt-stubs` (the type stubs the conformance check uses) creates a `tensorrt`
namespace package that holds only `.pyi` files. It imports, but has no API; the probe must not take
it for TensorRT, and must fall through to TensorRT-RTX (or say clearly that nothing usable is there).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest

from lseg_encoder.engine import backend_available, load_backend
from lseg_encoder.errors import BackendUnavailable

pytestmark = pytest.mark.trt


def _real_tensorrt_installed() -> bool:
    spec = importlib.util.find_spec("tensorrt")
    return spec is not None and spec.origin is not None  # a namespace package has no origin


@pytest.fixture
def stubs_only_tensorrt(tmp_path, monkeypatch):
    """Put a `tensorrt/` folder holding only `__init__.pyi` first on sys.path, and forget any import."""
    if _real_tensorrt_installed():
        pytest.skip("a real tensorrt package is installed; a stubs-only folder cannot shadow it")
    package = tmp_path / "tensorrt"
    package.mkdir()
    (package / "__init__.pyi").write_text("class Builder: ...\n__version__: str\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    importlib.invalidate_caches()
    module = importlib.import_module("tensorrt")
    assert not hasattr(module, "Builder")  # the stub imports, as a namespace package without the API
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    return package


def test_stubs_only_tensorrt_is_refused_with_a_reason(stubs_only_tensorrt):
    with pytest.raises(BackendUnavailable, match=r"lacks TensorRT's API \(__version__ and Builder"):
        load_backend("tensorrt")


def test_probe_falls_through_to_tensorrt_rtx(stubs_only_tensorrt):
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx)")
    backend = load_backend()
    assert backend.flavour == "tensorrt_rtx"
    assert backend.version[0].isdigit()
    ok, reason = backend_available()
    assert ok, reason
    assert reason.startswith("tensorrt_rtx ")


def test_probe_without_rtx_names_both_reasons(stubs_only_tensorrt, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)  # `import tensorrt_rtx` now raises ImportError
    with pytest.raises(BackendUnavailable) as info:
        load_backend()
    message = str(info.value)
    assert "lacks TensorRT's API" in message and "`import tensorrt_rtx` failed" in message
    ok, reason = backend_available()
    assert not ok and reason == message


def test_machine_info_does_not_report_the_stub_as_tensorrt(stubs_only_tensorrt):
    from lseg_encoder.suites.timing import machine_info

    assert machine_info()["tensorrt"] is None
