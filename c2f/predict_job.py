"""`c2f predict` over many videos: the settings, the decoding workers, resume, torchrun ranks and
the output files.

    OUT/predictions.csv   video_id, pred, prob, top5 (class:prob|...), fine_count, gflops (executed), seconds, frames
    OUT/decisions.csv     video_id, t, fine (1 where the expensive network ran), patch (AdaFocus; -1: none)
    OUT/summary.json      videos, frames, seconds by stage, GFLOPs executed (mean), the run, weights, budget
    OUT/errors.csv        video_id, path, reason: videos that could not be decoded
    OUT/strips/*.png      with --visualize: the sampled frames, the fine reads outlined, the patch boxed

Each rank appends to its own part files (OUT/parts/*-RRRR.csv) after every batch, flushed to disk,
and the last step merges them into the files above; a rerun skips the videos already predicted,
so a crash loses at most the batch in flight.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.extract import default_workers, resolve_device
from pipeline.files import append_csv, atomic_write_csv, atomic_write_text
from pipeline.manifest import SPLITS, read_manifest
from pipeline.options import option, validate
from pipeline.ranks import Ranks

from .evaluate import decision_columns
from .predict import Decoded, Predictor, Timer

log = logging.getLogger(__name__)
PREDICTION_COLUMNS = ["video_id", "pred", "prob", "top5", "fine_count", "gflops", "seconds", "frames"]
ERROR_COLUMNS = ["video_id", "path", "reason"]


@dataclass
class PredictConfig:
    # --run-dir for torchrun, whose own argument parser mistakes --run for its --run-path
    run: str = option(help="A finished `c2f train-head` run directory.", aliases=("--run-dir",))
    out: str = option(help="Output folder: predictions.csv, decisions.csv, summary.json, errors.csv.")
    videos: list[str] = option([], "Video files (the command's arguments).", cli=False)
    manifest: str | None = option(None, "A manifest CSV instead of video files.")
    split: str | None = option(None, "With --manifest: only this split.", choices=SPLITS)
    weights: list[str] = option([], "As for c2f extract (VALUE or SET=VALUE); a bare PATH serves every set that "
                                    "recorded its sha256. Default: what the cache recorded, for imagenet / random.")
    allow_other_weights: bool = option(False, "Accept weights other than the cache's (noted in summary.json).")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    budget: int | None = option(None, "Online: a video stops after its K-th fine read (AdaFocus: its first K "
                                      "frames).", minimum=1, kind=int)
    batch_size: int = option(16, "Videos per batch (the CNNs run across them).", minimum=1)
    workers: int | None = option(None, "Decoding processes (default as for c2f extract).", minimum=0, kind=int)
    video_timeout: float = option(1800.0, "Seconds one video may take to decode; past it the video goes to "
                                          "errors.csv and the run goes on.", above=0)
    visualize: bool = option(False, "Write a PNG strip per video into OUT/strips.")
    progress: bool = option(True, "Show a progress bar.")

    def __post_init__(self):
        validate(self)
        if bool(self.videos) == bool(self.manifest):
            raise ValueError("give video files or --manifest, not both and not neither")
        if self.split and not self.manifest:
            raise ValueError("--split needs --manifest")
        if self.workers is None:
            self.workers = default_workers(self.device)

    def entries(self) -> list[tuple[str, str]]:
        """(video_id, path) of every video to predict."""
        if self.manifest:
            manifest = read_manifest(self.manifest)
            return [(e.video_id, str(e.path)) for e in manifest.entries if not self.split or e.split == self.split]
        ids = [Path(v).stem for v in self.videos]
        unique = [i if ids.count(i) == 1 else f"{i}_{k}" for k, i in enumerate(ids)]
        return list(zip(unique, self.videos))


class _Decoding(Dataset):
    def __init__(self, predictor: Predictor, entries: list[tuple[str, str]]):
        self.predictor, self.entries = predictor, entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Decoded:
        return self.predictor.decode(*self.entries[i])


def _read_rows(path: Path) -> list[list[str]]:
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
        return {row[0] for kind in ("predictions", "errors") for path in self._all(kind) for row in _read_rows(path)}

    def append(self, predictions: list[dict], decisions: list[tuple], errors: list[tuple]) -> None:
        _append(self.part("decisions"), self.decision_columns, decisions)
        _append(self.part("errors"), ERROR_COLUMNS, errors)
        _append(self.part("predictions"), PREDICTION_COLUMNS, [[p[c] for c in PREDICTION_COLUMNS] for p in predictions])

    def merge(self, order: list[str]) -> list[list[str]]:
        """Every part into predictions.csv, decisions.csv and errors.csv (in `order`, the input's), parts
        removed; returns the predictions rows."""
        position = {video_id: i for i, video_id in enumerate(order)}
        key = lambda row: (position.get(row[0], len(position)), row[0])  # noqa: E731
        predictions = {row[0]: row for path in self._all("predictions") for row in _read_rows(path)}
        decisions = [row for path in self._all("decisions") for row in _read_rows(path) if row[0] in predictions]
        decisions = list({(row[0], row[1]): row for row in decisions}.values())
        errors = {row[0]: row for path in self._all("errors") for row in _read_rows(path) if row[0] not in predictions}
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


def _predict_share(predictor: Predictor, entries: list[tuple[str, str]], cfg: PredictConfig, outputs: Outputs) -> Timer:
    """This rank's videos: decoded (in worker processes when cfg.workers > 0), predicted in batches,
    written after each batch."""
    timer = Timer()
    loader = DataLoader(_Decoding(predictor, entries), batch_size=None, num_workers=cfg.workers,
                        prefetch_factor=2 if cfg.workers else None)
    bar = tqdm(total=len(entries), unit="video", desc="predict", disable=not cfg.progress, dynamic_ncols=True)
    batch: list[Decoded] = []

    def flush():
        result = predictor.run_batch(batch, timer)
        predictions, decisions = predictor.rows(result)
        outputs.append(predictions, decisions, [])
        if cfg.visualize:
            from .strips import write_strips
            write_strips(Path(cfg.out) / "strips", predictor, result)
        bar.update(len(batch))
        batch.clear()

    for decoded in loader:
        if decoded.error is not None:
            log.warning("%s: %s (%s)", decoded.video_id, decoded.error, decoded.path)
            timer.seconds["decode"] += decoded.seconds
            outputs.append([], [], [(decoded.video_id, decoded.path, decoded.error)])
            bar.update(1)
            continue
        batch.append(decoded)
        if len(batch) == cfg.batch_size:
            flush()
    if batch:
        flush()
    bar.close()
    return timer


def _summary(predictor: Predictor, cfg: PredictConfig, rows: list[list[str]], errors: int, seconds: dict) -> dict:
    column = {name: i for i, name in enumerate(PREDICTION_COLUMNS)}
    values = lambda name: np.array([float(r[column[name]]) for r in rows]) if rows else np.zeros(0)  # noqa: E731
    return {"run": str(predictor.run), "method": predictor.cfg.method, "videos": len(rows), "errors": errors,
            "frames": int(values("frames").sum()), "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "seconds_per_video": float(values("seconds").mean()) if rows else None,
            "gflops_executed_mean": float(values("gflops").mean()) if rows else None,
            "fine_mean": float(values("fine_count").mean()) if rows else None,
            "budget": cfg.budget, "device": str(predictor.runner.device), "precision": predictor.runner.precision,
            "sampling": predictor.sampling.attrs(), "seek": predictor.seek, "preprocess": predictor.runner.preprocess,
            "feature_sets": {role: fs.name for role, fs in predictor.sets.items()},
            "weights_other_than_the_cache": predictor.notes}


def predict_videos(cfg: PredictConfig) -> dict | None:
    """Run `c2f predict` (one rank of it under torchrun); rank 0 returns summary.json's content."""
    from contextlib import ExitStack

    from pipeline.extract import lock_for_the_whole_run
    out = Path(cfg.out)
    entries = cfg.entries()
    ranks, device = Ranks.start(resolve_device(cfg.device))
    try:
        with ExitStack() as stack:
            lock_for_the_whole_run(stack, out, ranks, what="prediction")
            predictor = Predictor.from_run(cfg.run, cfg.weights, str(device), cfg.allow_other_weights, cfg.budget)
            predictor.video_timeout = cfg.video_timeout
            outputs = Outputs(out, ranks.rank,
                              decision_columns(any(fs.output == "grid" for fs in predictor.sets.values())))
            if ranks.rank == 0:
                outputs.repair()
            ranks.barrier()          # every part is whole before any rank reads or appends
            done = outputs.done()
            mine = ranks.slice([e for e in entries if e[0] not in done])
            timer = _predict_share(predictor, mine, cfg, outputs)
            atomic_write_text(outputs.parts / f"summary-{ranks.rank:04d}.json", json.dumps(timer.seconds))
            ranks.barrier()          # every rank's parts are written
            return _merge(outputs, predictor, cfg, entries) if ranks.rank == 0 else None
    finally:
        ranks.close()


def _merge(outputs: Outputs, predictor: Predictor, cfg: PredictConfig, entries: list[tuple[str, str]]) -> dict:
    """The final files from every part, and summary.json (seconds added to those of earlier runs)."""
    seconds = Timer().seconds
    previous = outputs.out / "summary.json"
    parts = sorted(outputs.parts.glob("summary-*.json")) + ([previous] if previous.exists() else [])
    for path in parts:
        stored = json.loads(path.read_text(encoding="utf-8"))
        for key, value in stored.get("seconds", stored).items():
            seconds[key] += value
    rows = outputs.merge([e[0] for e in entries])
    errors = len(_read_rows(outputs.out / "errors.csv"))
    summary = _summary(predictor, cfg, rows, errors, seconds)
    atomic_write_text(previous, json.dumps(summary, indent=1))
    outputs.remove_parts()
    return summary
