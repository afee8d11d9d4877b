"""Manifest CSVs: reading, validation with line-numbered errors, writing (converters.py builds them
from official annotations, a folder, or a list of video files).

A manifest has the columns video_id, path, labels (joined by '|'), split; optional
columns are carried along. Paths are absolute or relative to the manifest's folder.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ManifestError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video_id", "path", "labels", "split")
SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp")


@dataclass(frozen=True)
class VideoEntry:
    video_id: str
    path: Path
    labels: tuple[str, ...]
    split: str
    line: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Manifest:
    path: Path
    entries: list[VideoEntry]
    warnings: list[str]

    def split(self, name: str) -> list[VideoEntry]:
        return [e for e in self.entries if e.split == name]

    def classes(self) -> list[str]:
        """Class names in index order: classes.txt beside the manifest, else sorted names."""
        listed = self.path.parent / "classes.txt"
        if listed.exists():
            names = [line.strip() for line in _text(listed).splitlines() if line.strip()]
            unknown = sorted({lab for e in self.entries for lab in e.labels} - set(names))
            if unknown:
                raise ManifestError(f"{listed}: labels used in the manifest but not listed: {', '.join(unknown[:10])}")
            return names
        return sorted({lab for e in self.entries for lab in e.labels})


def _text(path: Path) -> str:
    """The file's text; ManifestError (file and line) when it cannot be read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ManifestError(f"{path}: cannot be read ({err.strerror or err.__class__.__name__})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x}); save it as UTF-8") from None


def _rows(path: Path, text: str):
    """(line where the row starts, row) of a CSV text; csv's errors as ManifestError with that line."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)     # strict: a broken quote is an error
    columns = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(f"{path}:1: missing column(s) {', '.join(missing)} (have: {', '.join(columns) or 'none'})")
    start = reader.line_num + 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as err:
        why = ("an unterminated quote: the field opened here never closes" if "end of data" in str(err) else
               "a field longer than 128 KiB (is this a manifest?)" if "field limit" in str(err) else
               f"not valid CSV ({err})")
        raise ManifestError(f"{path}:{start}: {why}") from None


def _control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _entry(path: Path, line: int, row: dict, problems: list[str]) -> VideoEntry | None:
    """One row as a VideoEntry, or None with its problems appended (line-numbered)."""
    video_id = (row["video_id"] or "").strip()
    if not video_id:
        problems.append(f"{path}:{line}: empty video_id")
        return None
    if _control(video_id):       # NUL and the like: no HDF5 string, file name or CSV cell may hold them
        problems.append(f"{path}:{line}: video_id {video_id!r} holds a control character")
        return None
    split = (row["split"] or "").strip()
    if split not in SPLITS:
        problems.append(f"{path}:{line}: unknown split {split!r} for {video_id!r} (use one of {', '.join(SPLITS)})")
    labels = tuple(lab.strip() for lab in (row["labels"] or "").split("|") if lab.strip())
    if not labels and split != "test":
        problems.append(f"{path}:{line}: empty labels for {video_id!r}")
    if any(_control(label) for label in labels):
        problems.append(f"{path}:{line}: a label of {video_id!r} holds a control character")
    raw = row["path"] or ""
    video_path = _video_path(path, raw)
    if _control(raw):
        problems.append(f"{path}:{line}: the path of {video_id!r} holds a control character")
    extra = {k: v for k, v in row.items() if k not in REQUIRED_COLUMNS and k is not None}
    return VideoEntry(video_id, video_path, labels, split, line, extra)


def _video_path(manifest: Path, raw: str) -> Path:
    """The path as written (file names may begin or end with spaces), else without the spaces around it."""
    def resolve(text):
        return Path(text) if os.path.isabs(text) else manifest.parent / text
    exact, stripped = resolve(raw), resolve(raw.strip())
    return exact if raw == raw.strip() or exact.exists() or not stripped.exists() else stripped


def read_manifest(path: str | os.PathLike, check_paths: bool = True) -> Manifest:
    """Read and validate a manifest; raise ManifestError listing all hard problems.

    Hard problems: not UTF-8, broken CSV, missing columns, empty or duplicate ids, ids with
    control characters, unknown split, empty labels in train/val (an unlabelled test split is
    allowed). An unreadable video path is a warning only: extraction records it in errors.csv
    and goes on.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found" if not path.exists() else f"{path}: not a file")
    return _checked(path, _rows(path, _text(path)), check_paths)


def manifest_of_rows(rows: list[dict], source: str | os.PathLike, check_paths: bool = True) -> Manifest:
    """A manifest from rows made in memory (c2f extract VIDEO...), validated as a file would be; its
    errors name `source` and the row (1 for the first)."""
    as_text = [(i + 1, {k: ("|".join(v) if k == "labels" and not isinstance(v, str) else str(v))
                        for k, v in row.items()}) for i, row in enumerate(rows)]
    return _checked(Path(source), as_text, check_paths)


def _checked(path: Path, rows, check_paths: bool) -> Manifest:
    problems, warnings, entries, first_line = [], [], [], {}
    for line, row in rows:
        entry = _entry(path, line, row, problems)
        if entry is None:
            continue
        if entry.video_id in first_line:
            problems.append(f"{path}:{line}: duplicate video_id {entry.video_id!r} (first on line "
                            f"{first_line[entry.video_id]})")
            continue
        first_line[entry.video_id] = line
        if check_paths and (not entry.path.is_file() or not os.access(entry.path, os.R_OK)):
            warnings.append(f"{path}:{line}: cannot read {entry.path} for {entry.video_id!r}")
        entries.append(entry)
    if problems:        # the first line names the first problem; the others follow, one a line
        more = f" ({len(problems) - 1} more problems below)" if len(problems) > 1 else ""
        shown = problems[1:50] + ([f"... and {len(problems) - 50} more"] if len(problems) > 50 else [])
        raise ManifestError("\n".join([problems[0] + more, *shown]))
    if warnings:                # one line however many: a manifest of 10^5 missing videos must not flood the log
        more = f" (and {len(warnings) - 1} more: c2f manifest check lists them)" if len(warnings) > 1 else ""
        log.warning("%s%s", warnings[0], more)
    return Manifest(path, entries, warnings)


def write_manifest(rows: list[dict], out: str | os.PathLike) -> Path:
    """Write rows (dicts with the required columns, labels as a list or '|'-joined string)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r} - set(REQUIRED_COLUMNS))
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(REQUIRED_COLUMNS) + extra)
        writer.writeheader()
        for row in rows:
            row = dict(row)
            if not isinstance(row["labels"], str):
                row["labels"] = "|".join(row["labels"])
            writer.writerow(row)
    os.replace(tmp, out)
    return out
