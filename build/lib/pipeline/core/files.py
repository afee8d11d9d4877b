"""Small file-system helpers every writer shares: write under a temporary name and rename
(a reader never sees half a file), CSV files written whole or appended line by line, hashing,
disk-space checks, a POSIX lock that ranks take turns on, and the lock that keeps a second run
out of a folder."""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .errors import DiskFullError, InUseError


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
RESERVE_BYTES = 8 << 20        # kept free: HDF5 and the index need room beyond the data itself


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


def atomic_write_csv(path: str | os.PathLike, header: list[str], rows) -> Path:
    """A whole CSV file (header, then rows), written as atomic_write does."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return atomic_write(path, write)


def append_csv(path: str | os.PathLike, header: list[str], rows) -> None:
    """Rows appended to a CSV file (the header first when the file is new or empty), flushed to
    disk before returning: a crash loses at most the line being written."""
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(header)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def error_line(err: BaseException) -> str:
    """One line saying what went wrong (errors.csv, logs): the message's first line, else the error's kind."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else err.__class__.__name__


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


class FolderLock:
    """An exclusive lock on a folder (a cache, a prediction's output): a second run on the same
    folder refuses at once (InUseError).

    A POSIX record lock (lockf), not flock: it belongs to this process alone, so forked
    DataLoader workers, which outlive a SIGKILLed parent by a few seconds, do not hold it
    and a rerun right after a crash is not refused.
    """

    def __init__(self, folder: Path, name: str = ".lock", what: str = "extraction"):
        self.path, self.what = Path(folder) / name, what
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.lockf(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise InUseError(f"{self.path.parent} is in use by another {self.what} (lock {self.path})",
                             "wait for it to finish or use another --out") from None
        return self

    def __exit__(self, *exc):
        fcntl.lockf(self.handle, fcntl.LOCK_UN)
        self.handle.close()
