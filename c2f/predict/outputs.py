"""`c2f predict`'s output folder, which this module alone writes:

    OUT/predictions.csv   video_id, pred, prob, top5 (class:prob|...), fine_count, gflops (executed), seconds, frames
    OUT/decisions.csv     video_id, t, fine (1 where the expensive network ran), patch (AdaFocus; -1: none)
    OUT/summary.json      videos, frames, seconds by stage, GFLOPs executed (mean), the run, weights, budget
    OUT/errors.csv        video_id, path, reason: videos that could not be decoded
    OUT/strips/*.png      with --visualize: the sampled frames, the fine reads outlined, the patch boxed

Each rank appends to its own part files (OUT/parts/*-RRRR.csv) after every batch, flushed to disk,
and the last step merges them into the files above; a rerun skips the videos already predicted,
so a crash loses at most the batch in flight."""
from __future__ import annotations

import csv
from pathlib import Path

from pipeline.core.files import append_csv, atomic_write_csv

PREDICTION_COLUMNS = ["video_id", "pred", "prob", "top5", "fine_count", "gflops", "seconds", "frames"]


ERROR_COLUMNS = ["video_id", "path", "reason"]


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

    def done(self) -> set[str]:
        """Videos predicted, or failed, by any earlier run or rank."""
        return {row[0] for kind in ("predictions", "errors") for path in self._all(kind) for row in read_rows(path)}

    def append(self, predictions: list[dict], decisions: list[tuple], errors: list[tuple]) -> None:
        _append(self.part("decisions"), self.decision_columns, decisions)
        _append(self.part("errors"), ERROR_COLUMNS, errors)
        _append(self.part("predictions"), PREDICTION_COLUMNS, [[p[c] for c in PREDICTION_COLUMNS] for p in predictions])

    def merge(self, order: list[str]) -> list[list[str]]:
        """Every part into predictions.csv, decisions.csv and errors.csv (in `order`, the input's), parts
        removed; returns the predictions rows."""
        position = {video_id: i for i, video_id in enumerate(order)}
        key = lambda row: (position.get(row[0], len(position)), row[0])  # noqa: E731
        predictions = {row[0]: row for path in self._all("predictions") for row in read_rows(path)}
        decisions = [row for path in self._all("decisions") for row in read_rows(path) if row[0] in predictions]
        decisions = list({(row[0], row[1]): row for row in decisions}.values())
        errors = {row[0]: row for path in self._all("errors") for row in read_rows(path) if row[0] not in predictions}
        for kind, header, rows in (("predictions", PREDICTION_COLUMNS, predictions.values()),
                                   ("decisions", self.decision_columns, decisions),
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

