"""The CPU allocator, told to keep what the backbones free. A backbone's activations are allocated and
freed at every batch; glibc's malloc gives blocks above its mmap threshold (128 KiB at first, growing
to at most 32 MiB) their own mapping and returns them to the kernel when freed, and trims the heap's
top, so the next batch faults every page in again: millions of minor page faults and seconds of
kernel time a run (bench/extract_process.py). Raising the threshold to its maximum and never trimming
keeps blocks up to 32 MiB in the heap, reused from batch to batch; the batch size on the CPU is chosen
so that a batch's activations fit under it (pipeline.extract). It is set once the models are built:
set before, the checkpoints' tensors, freed once loaded into the models, would stay in the heap too
(about one checkpoint's size for the whole run)."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # glibc's mallopt parameters
MMAP_THRESHOLD_MAX = 32 << 20                      # glibc's largest on 64-bit systems
_kept = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve blocks up to 32 MiB from the heap and never trim it (once per
    process; it is a process-wide setting, made by the commands that run backbones on the CPU). False
    where the C library is not glibc (nothing is changed)."""
    global _kept
    if _kept:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    log.info("malloc keeps freed blocks up to 32 MiB: %s", _kept)
    return _kept
