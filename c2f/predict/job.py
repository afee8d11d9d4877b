"""`c2f predict` over many videos: the settings, the decoding workers, torchrun ranks (each takes an
interleaved share of the videos not yet predicted), and the summary; the output folder is
outputs.py's."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.core.devices import DEVICE_HELP, default_workers, resolve_device
from pipeline.core.errors import SettingsError
from pipeline.core.files import atomic_write_text
from pipeline.core.manifest import SPLITS, read_manifest
from pipeline.core.options import option, validate
from pipeline.core.ranks import Ranks, lock_for_the_whole_run
from pipeline.decode import VIDEO_TIMEOUT

from pipeline.core.errors import PredictError
from pipeline.core.memory import freed_memory_kept

from .. import __version__
from ..evaluate import decision_columns, decision_rows
from ..methods import role_of
from ..rundir import RunDir
from .engine import Decoded, Predictor, Timer
from .outputs import Outputs, claim, read_rows
from .prediction import PREDICTION_COLUMNS

log = logging.getLogger(__name__)


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
    device: str = option("auto", DEVICE_HELP)
    budget: int | None = option(None, "Online: a video stops after its K-th fine read (AdaFocus: its first K "
                                      "frames).", minimum=1, kind=int)
    gflops_budget: float | None = option(
        None, "Run the head at the point of RUN/curve.csv (or as trained) most accurate on the run's calibration "
              "videos among those that cost at most this many GFLOPs a video there (the eval split never chooses).",
        above=0, kind=float)
    threshold: list[str] = option([], "KNOB=VALUE: set one of the head's knobs (gate, keep, exit, frames_read, ...; a bare VALUE: "
                                      "its first), as in RUN/curve.csv's value column. Repeatable.")
    batch_size: int = option(32, "Videos per batch (the CNNs run across them; a stepping head's calls "
                             "read one frame of each video still running).", minimum=1)
    workers: int | None = option(None, "Decoding processes (default as for c2f extract).", minimum=0, kind=int)
    video_timeout: float = option(VIDEO_TIMEOUT, "Seconds one video may take to decode; past it the video goes to "
                                          "errors.csv and the run goes on.", above=0)
    visualize: bool = option(False, "Write a PNG strip per video into OUT/strips.")
    overwrite: bool = option(False, "Replace what OUT holds when it was predicted with another run, other weights, "
                                    "another budget or another c2f (otherwise refused: two never mix).")
    progress: bool = option(True, "Show a progress bar.")

    def __post_init__(self):
        validate(self)
        if bool(self.videos) == bool(self.manifest):
            raise SettingsError("give video files or --manifest, not both and not neither")
        if self.split and not self.manifest:
            raise SettingsError("--split needs --manifest")
        if self.gflops_budget is not None and (self.threshold or self.budget is not None):
            raise SettingsError("--gflops-budget chooses the thresholds and the budget: give it alone")
        resolve_device(self.device)        # a device that is not there: one line, before anything is written
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


def _predict_share(predictor: Predictor, entries: list[tuple[str, str]], cfg: PredictConfig, outputs: Outputs) -> Timer:
    """This rank's videos: decoded (in worker processes when cfg.workers > 0), predicted in batches,
    written after each batch. The timer's stages split this loop's wall time: waiting for decoded
    videos (decode), the batches' own stages (Predictor.run_batch), and writing (output)."""
    timer = Timer()
    loader = DataLoader(_Decoding(predictor, entries), batch_size=None, num_workers=cfg.workers,
                        prefetch_factor=2 if cfg.workers else None)
    bar = tqdm(total=len(entries), unit="video", desc="predict", disable=not cfg.progress, dynamic_ncols=True)
    batch: list[Decoded] = []
    clock = _Lap(timer)

    def flush():
        clock.lap("output")
        result = predictor.run_batch(batch, timer)       # adds its own stages
        clock.restart()
        for failed in result.failed:
            log.warning("%s: %s (%s)", failed.video_id, failed.error, failed.path)
        outputs.append(predictor.predictions(result), list(decision_rows(result.result)),
                       [(v.video_id, v.path, v.error) for v in result.failed])
        if cfg.visualize:
            from .strips import write_strips
            write_strips(Path(cfg.out) / "strips", predictor, result)
        bar.update(len(batch))
        batch.clear()
        clock.lap("output")

    for decoded in loader:
        clock.lap("decode")
        if decoded.error is not None:
            log.warning("%s: %s (%s)", decoded.video_id, decoded.error, decoded.path)
            outputs.append([], [], [(decoded.video_id, decoded.path, decoded.error)])
            bar.update(1)
            clock.lap("output")
            continue
        batch.append(decoded)
        if len(batch) == cfg.batch_size:
            flush()
    clock.lap("decode")             # the loader's last wait
    if batch:
        flush()
    bar.close()
    return timer


class _Lap:
    """Adds the seconds since the last lap to a stage of a timer: consecutive spans, so the stages add
    up to the wall time."""

    def __init__(self, timer: Timer):
        self.timer = timer
        self.restart()

    def restart(self) -> None:
        self.mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timer.seconds[stage] += now - self.mark
        self.mark = now


def _summary(predictor: Predictor, cfg: PredictConfig, rows: list[list[str]], errors: int, seconds: dict) -> dict:
    column = {name: i for i, name in enumerate(PREDICTION_COLUMNS)}
    values = lambda name: np.array([float(r[column[name]]) for r in rows]) if rows else np.zeros(0)  # noqa: E731
    return {"run": str(predictor.run), "method": predictor.cfg.method, "videos": len(rows), "errors": errors,
            "frames": int(values("frames").sum()), "frames_decoded": int(values("frames_decoded").sum()),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "seconds_per_video": float(values("seconds").mean()) if rows else None,
            "gflops_executed_mean": float(values("gflops").mean()) if rows else None,
            "fine_mean": float(values("fine_count").mean()) if rows else None,
            "budget": predictor.budget, "operating_point": predictor.operating_point, "device": str(predictor.runner.device), "precision": predictor.runner.precision,
            "sampling": predictor.sampling.attrs(), "seek": predictor.seek, "preprocess": predictor.runner.preprocess,
            "feature_sets": {role: fs.name for role, fs in predictor.sets.items()},
            "weights_other_than_the_cache": predictor.notes}


def identity(predictor: Predictor, cfg: PredictConfig) -> dict:
    """What OUT's predictions are made with (OUT/prediction.json): a rerun must match it to resume there."""
    return {"run": str(predictor.run.resolve()), "head_sha256": RunDir(predictor.run).head_sha256(),
            "method": predictor.cfg.method, "weights": predictor.weights, "budget": predictor.budget,
            "operating_point": predictor.operating_point, "c2f": __version__}


def _claim_together(out: Path, made_with: dict, overwrite: bool, ranks: Ranks) -> None:
    """Rank 0 claims OUT (outputs.claim); if it refuses, every rank refuses together."""
    refusal = None
    if ranks.rank == 0:
        try:
            claim(out, made_with, overwrite)
        except PredictError as err:
            refusal = err
    if not ranks.all_true(refusal is None):
        raise refusal or PredictError(f"{out}: rank 0 refused the output folder")


def predict_videos(cfg: PredictConfig) -> dict | None:
    """Run `c2f predict` (one rank of it under torchrun); rank 0 returns summary.json's content."""
    from contextlib import ExitStack
    out = Path(cfg.out)
    entries = cfg.entries()
    ranks, device = Ranks.start(resolve_device(cfg.device))
    try:
        with ExitStack() as stack:
            lock_for_the_whole_run(stack, out, ranks, what="prediction")
            predictor = Predictor.from_run(cfg.run, cfg.weights, str(device), cfg.allow_other_weights, cfg.budget,
                                           gflops_budget=cfg.gflops_budget, thresholds=cfg.threshold)
            if device.type == "cpu":     # once the checkpoints are loaded and freed (pipeline.core.memory):
                stack.enter_context(freed_memory_kept())     # the CNNs' activations stay in the heap
            predictor.video_timeout = cfg.video_timeout
            _claim_together(out, identity(predictor, cfg), cfg.overwrite, ranks)
            outputs = Outputs(out, ranks.rank,
                              decision_columns(any(fs.output == "grid" for fs in predictor.sets.values()),
                                               sum(role_of(role) == "fine" for role in predictor.sets)))
            if ranks.rank == 0:
                outputs.repair()
            ranks.barrier()          # every part is whole before any rank reads or appends
            done = outputs.done()
            mine = ranks.slice([e for e in entries if e not in done])
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
    errors = len(read_rows(outputs.out / "errors.csv"))
    summary = _summary(predictor, cfg, rows, errors, seconds)
    atomic_write_text(previous, json.dumps(summary, indent=1))
    outputs.remove_parts()
    return summary
