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
        raise _unknown(device) from None


def parse_cli_device(device: str) -> torch.device:
    """A device the command line runs on (cpu, cuda, cuda:N); any other name is the same one line."""
    parsed = parse_device(device)
    if parsed.type not in CLI_DEVICE_TYPES:
        raise _unknown(device)
    return parsed


def _unknown(device) -> LsegError:
    return LsegError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
