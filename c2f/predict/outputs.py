"""`c2f predict`'s output folder, which this module alone writes:

    OUT/prediction.json   what the predictions are made with: the run (and its head's sha256), the
                          weights, the budget, the c2f version; a rerun with other ones is refused
    OUT/predictions.csv   video_id, path, pred, prob, top5 (class:prob|...), fine_count, gflops (executed),
                          seconds, frames
    OUT/decisions.csv     video_id, t, fine (1 where the expensive network ran), patch (AdaFocus; -1: none)
    OUT/summary.json      videos, frames, seconds by stage, GFLOPs executed (mean), the run, weights, budget
    OUT/errors.csv        video_id, path, reason: videos that could not be decoded
    OUT/strips/*.png      with --visualize: the sampled frames, the fine reads outlined, the patch boxed

Each rank appends to its own part files (OUT/parts/*-RRRR.csv) after every batch, flushed to disk,
and the last step merges them into the files above; a rerun skips the videos already predicted (the
same id at the same path), so a crash loses at most the batch in flight."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from pipeline.core.errors import PredictError
from pipeline.core.files import append_csv, atomic_write_csv, atomic_write_text

from .prediction import PREDICTION_COLUMNS, Prediction

ERROR_COLUMNS = ["video_id", "path", "reason"]
OUTPUT_FILES = ("prediction.json", "predictions.csv", "decisions.csv", "summary.json", "errors.csv")
OUTPUT_FOLDERS = ("parts", "strips")


def read_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def _append(path: Path, header: list[str], rows: list) -> None:
    if rows:
        append_csv(path, header, rows)


def _drop_torn_line(path: Path) -> None:
    """A crash mid-append leaves a last line without its newline: cut it off."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with open(path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)


def claim(out: Path, identity: dict, overwrite: bool) -> None:
    """Make OUT this prediction's: refuse (or, with overwrite, clear) a folder holding predictions made
    with another run, other weights, another budget or another c2f; never mix two into one file."""
    out.mkdir(parents=True, exist_ok=True)
    recorded_file = out / "prediction.json"
    leftovers = [n for n in OUTPUT_FILES[1:] + OUTPUT_FOLDERS if (out / n).exists()]
    recorded = json.loads(recorded_file.read_text(encoding="utf-8")) if recorded_file.exists() else None
    if recorded is not None and recorded != identity or recorded is None and leftovers:
        if not overwrite:
            differing = sorted(k for k in identity if (recorded or {}).get(k) != identity[k])
            what = f"other {', '.join(differing)}" if recorded is not None else "an older c2f or another tool"
            raise PredictError(f"{out} holds predictions made with {what}",
                               "give another --out, or --overwrite to replace them")
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        for name in OUTPUT_FOLDERS:
            shutil.rmtree(out / name, ignore_errors=True)
    atomic_write_text(recorded_file, json.dumps(identity, indent=1, sort_keys=True))


class Outputs:
    """OUT's files: this rank's part files, appended after every batch, and the merge into the final
    files. A video counts as done once its predictions row is written (after its decisions)."""

    def __init__(self, out: Path, rank: int, decision_columns: list[str]):
        self.out, self.rank, self.decision_columns = out, rank, decision_columns
        self.parts = out / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)

    def part(self, kind: str, rank: int | None = None) -> Path:
        return self.parts / f"{kind}-{self.rank if rank is None else rank:04d}.csv"

    def _all(self, kind: str) -> list[Path]:
        return [self.out / f"{kind}.csv"] + sorted(self.parts.glob(f"{kind}-*.csv"))

    def repair(self) -> None:
        """Before any rank appends: no torn line in any part."""
        for path in self.parts.glob("*.csv"):
            _drop_torn_line(path)

    def done(self) -> set[tuple[str, str]]:
        """(video_id, path) of the videos predicted, or failed, by any earlier run or rank."""
        return {(row[0], row[1]) for kind in ("predictions", "errors") for path in self._all(kind)
                for row in read_rows(path)}

    def append(self, predictions: list[Prediction], decisions: list[tuple], errors: list[tuple]) -> None:
        _append(self.part("decisions"), self.decision_columns, decisions)
        _append(self.part("errors"), ERROR_COLUMNS, errors)
        _append(self.part("predictions"), PREDICTION_COLUMNS,
                [[p.row()[c] for c in PREDICTION_COLUMNS] for p in predictions])

    def _decisions(self, predicted: dict) -> list[list[str]]:
        """Each predicted video's decisions from the last file that predicted it (a video predicted again,
        at a new path, replaces all its earlier rows)."""
        by_video: dict[str, list] = {}
        for path in self._all("decisions"):
            fresh: dict[str, list] = {}
            for row in read_rows(path):
                fresh.setdefault(row[0], []).append(row)
            by_video |= fresh
        return [row for video_id, rows in by_video.items() if video_id in predicted for row in rows]

    def merge(self, order: list[str]) -> list[list[str]]:
        """Every part into predictions.csv, decisions.csv and errors.csv (in `order`, the input's), parts
        removed; returns the predictions rows."""
        position = {video_id: i for i, video_id in enumerate(order)}
        key = lambda row: (position.get(row[0], len(position)), row[0])  # noqa: E731
        predictions = {row[0]: row for path in self._all("predictions") for row in read_rows(path)}
        errors = {row[0]: row for path in self._all("errors") for row in read_rows(path) if row[0] not in predictions}
        for kind, header, rows in (("predictions", PREDICTION_COLUMNS, predictions.values()),
                                   ("decisions", self.decision_columns, self._decisions(predictions)),
                                   ("errors", ERROR_COLUMNS, errors.values())):
            ordered = sorted(rows, key=lambda row: (*key(row), int(row[1]) if kind == "decisions" else 0))
            atomic_write_csv(self.out / f"{kind}.csv", header, ordered)
        for path in self.parts.glob("*.csv"):
            path.unlink()
        return sorted(predictions.values(), key=key)

    def remove_parts(self) -> None:
        for path in self.parts.glob("*"):
            path.unlink()
        self.parts.rmdir()
