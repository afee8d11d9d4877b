"""The CPU allocator, told to keep what the backbones free, for as long as they run. A backbone's
activations are allocated and freed at every batch; glibc's malloc gives blocks above its mmap
threshold (128 KiB at first, growing to at most 32 MiB) their own mapping and returns them to the
kernel when freed, and trims the heap's top, so the next batch faults every page in again: millions of
minor page faults and seconds of kernel time a run (bench/extract_process.py). Raising the threshold
to its maximum and never trimming keeps blocks up to 32 MiB in the heap, reused from batch to batch;
the batch size on the CPU is chosen so that a batch's activations fit under it (pipeline.batching).

It is scoped: set once the models are built (set before, the checkpoints' tensors, freed once loaded
into the models, would stay in the heap too: about one checkpoint's size for the whole run), and
undone when the backbones are done, with the kept heap handed back. Left set to the end of the
process, it made the interpreter's shutdown grow the process by 50-120 MB over its peak while
extracting (ResNet-50, measured with `ru_maxrss`): the peak memory a user sees."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from contextlib import contextmanager

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # glibc's mallopt parameters
MMAP_THRESHOLD_MAX = 32 << 20                      # glibc's largest on 64-bit systems
DEFAULT_THRESHOLD = 128 << 10                      # glibc's initial trim and mmap thresholds
_depth = 0                                         # nested scopes (the demo runs commands in one process)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError):         # not glibc: nothing to tell
        return None


def _set(libc, mmap_threshold: int, trim_threshold: int) -> bool:
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


@contextmanager
def freed_memory_kept():
    """Within the block, glibc's malloc serves blocks up to 32 MiB from the heap and never trims it;
    after it, its initial thresholds are back and the heap is trimmed. Yields whether it was set (False
    where the C library is not glibc: nothing is changed). A process-wide setting: the commands that
    run backbones on the CPU open it once their models are built."""
    global _depth
    libc = _libc()
    kept = libc is not None and (_depth > 0 or _set(libc, MMAP_THRESHOLD_MAX, 2**31 - 1))
    log.info("malloc keeps freed blocks up to 32 MiB: %s", kept)
    _depth += kept
    try:
        yield kept
    finally:
        _depth -= kept
        if kept and _depth == 0:
            _set(libc, DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
            libc.malloc_trim(0)
