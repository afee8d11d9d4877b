"""Devices: `auto` is CUDA where there is one, the CPU otherwise; a device that is not there is
refused before anything is written (one line, no traceback); decoding workers per device."""
from __future__ import annotations

import os

from .errors import DeviceError

DEVICE_HELP = "auto (CUDA where there is one, else the CPU), cpu, cuda, cuda:1, ..."


def resolve_device(name: str):
    """The torch device for `name`; DeviceError when it is not there."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {name!r} is not a device", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device here", "use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices",
                              f"use cuda:0 ... cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name}: c2f runs on cpu or cuda", "use auto, cpu or cuda")
    return device


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)


def default_workers(device: str) -> int:
    """Decoding processes: on a GPU every core but the main process's (the backbones are cheap
    there, decoding is the wall); on the CPU an eighth, 0 on 2 cores: decode in the main process,
    since the backbones need every core and a preempted compute thread stalls its sibling at every
    barrier."""
    return max(1, cores() - 1) if resolve_device(device).type == "cuda" else cores() // 8
