"""Small file-system helpers every writer shares: write under a temporary name and rename
(a reader never sees half a file), hashing, and a POSIX lock that ranks take turns on."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
RESERVE_BYTES = 8 << 20        # kept free: HDF5 and the index need room beyond the data itself


class DiskFullError(RuntimeError):
    """No room to write: the message says where and how much; nothing half-written was kept."""


def require_space(folder: Path, needed: int, what: str) -> None:
    """Refuse, before writing, what would not fit (HDF5 fails badly on a full disk)."""
    free = shutil.disk_usage(folder).free
    if free < needed + RESERVE_BYTES:
        raise DiskFullError(f"{folder}: not enough free disk space for {what} (needs {(needed + RESERVE_BYTES) / 2**20:.1f} "
                            f"MiB, {free / 2**20:.1f} MiB free); free some space and run the same command again: it resumes")


def disk_full(err: BaseException) -> bool:
    return isinstance(err, DiskFullError) or (isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry itself is data)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` writes the file's content to a temporary path, which is then flushed to disk
    and renamed to `path`. Whatever `write` raises, `path` is untouched and the temporary file
    is removed, so a crash or a full disk never leaves a half-written file under the final name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def locked(path: Path):
    """Hold an exclusive POSIX lock on `path` (waiting for it): ranks take turns."""
    with open(path, "a+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
