"""Backends behind one interface; see `base.Runner`. Optional backends are imported lazily."""

from .base import InputSpec, Runner
from .torch_runner import TorchRunner

__all__ = ["InputSpec", "Runner", "TorchRunner"]
