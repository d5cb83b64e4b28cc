"""Runners: one interface over every backend (`base.Runner`). A runner runs the module or the
artefact it is given and never exports or builds one; `lseg_encoder.backends.make_runner` pairs a
backend with its loader. Optional backends are imported lazily by their own modules."""

from __future__ import annotations

from .base import InputSpec, Runner
from .torch_runner import TorchRunner

__all__ = ["InputSpec", "Runner", "TorchRunner"]
