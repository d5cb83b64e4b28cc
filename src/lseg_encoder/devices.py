"""Device names: the one parser behind every runner and every `--device` flag."""

from __future__ import annotations

import torch

from .errors import LsegError

CLI_DEVICE_TYPES = ("cpu", "cuda")  # what the command line runs on


def parse_device(device: str | torch.device) -> torch.device:
    """`torch.device(device)`, with a name torch cannot parse as one LsegError line (torch's own
    message is a RuntimeError listing twenty device types)."""
    try:
        return torch.device(device)
    except RuntimeError:
        raise LsegError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
