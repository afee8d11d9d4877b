"""A run folder (`c2f train-head --out RUN`): this module alone writes and reads its files (the
report, prediction and bench/ read them through RunDir: config(), metrics(), table(), has()).

    config.json      every setting (flat, paths absolute; a valid `--config`), the feature sets used and
                     their attributes, the manifest's sha256, the classes, the head's counted costs,
                     provenance (c2f and torch versions, the command line, the weights' files)
    log.csv          one row per epoch of each stage, written as training goes
    head.pt          the trained weights (loaded with weights_only=True)
    predictions.csv  video_id, label, pred, fine_count, gflops
    decisions.csv    video_id, t, fine, and patch for the heads that read one patch per frame
    metrics.json     top-1, mAP, GFLOPs, fine reads, how training went; written last: a folder holding
                     it is a finished run
    skipped.csv      manifest videos left out, and why (only when there are)
    online.csv       `c2f evaluate-online`'s rows
    checkpoint.pt    only while training runs (a killed run resumes from it)

A folder becomes a run only when training has finished (metrics.json). An unfinished one resumes
when its settings are the same, and is replaced otherwise: it never blocks a rerun. A finished
one is replaced only with --overwrite. Files that are not a run's are never deleted."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import RunError
from pipeline.core.files import append_csv, atomic_write, atomic_write_csv, atomic_write_text, sha256_of

from .config import TrainConfig
from .evaluate import EvalResult, decision_columns, decision_rows
from .heads import Head, HeadDims, build_head

RUN_FILES = ("config.json", "log.csv", "head.pt", "predictions.csv", "decisions.csv", "metrics.json", "skipped.csv",
             "online.csv", "curve.csv", "checkpoint.pt")
RUN_FOLDERS = ("tensorboard",)
TEMPORARY = ("checkpoint.pt",)
PARTIAL = ".tmp"        # a run file being written (pipeline.core.files.atomic_write); left by a crash
NOT_REPEATED = ("overwrite", "progress")        # settings of the invocation, not of the run
LOG_COLUMNS = ["stage", "epoch", "lr", "train_loss", "seconds", "logs"]


def _known(name: str) -> str:
    if name not in RUN_FILES:
        raise ValueError(f"{name!r} is not a run file ({', '.join(RUN_FILES)})")
    return name


def _run_file(name: str) -> bool:
    """A run's own file or folder, or one being written when a run was killed."""
    return name in RUN_FILES + RUN_FOLDERS or (name.endswith(PARTIAL) and name[:-len(PARTIAL)] in RUN_FILES)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tensorboard = None        # a SummaryWriter once asked for; False when TensorBoard is not installed

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return all(self.file(n).exists() for n in ("config.json", "head.pt", "metrics.json"))

    # -------------------------------------------------------------- starting

    def claim(self, settings: dict, overwrite: bool) -> bool:
        """Make the folder this run's; True when an unfinished run of the same settings resumes here.
        RunError for a file, a finished run (without --overwrite) or a folder of other files."""
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"--out {self.path} is a file, not a folder")
        present = sorted(p.name for p in self.path.iterdir()) if self.path.exists() else []
        foreign = [n for n in present if not _run_file(n) and not n.startswith(".")]
        if foreign:
            raise RunError(f"--out {self.path} holds files that are not a c2f run's ({', '.join(foreign[:3])})",
                           "give an empty or new folder")
        if self.finished and not overwrite:
            raise RunError(f"{self.path} already holds a finished run", "give --overwrite to replace it, or another --out")
        resume = (not self.finished and self.file("checkpoint.pt").exists() and self.file("config.json").exists()
                  and _repeatable(self.config()["settings"]) == _repeatable(settings))
        if not resume:
            self.clear()
        self.path.mkdir(parents=True, exist_ok=True)
        return resume

    def clear(self) -> None:
        for name in RUN_FILES:
            self.file(name).unlink(missing_ok=True)
            self.file(name + PARTIAL).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(self.file(name), ignore_errors=True)

    def write_config(self, payload: dict) -> None:
        atomic_write_text(self.file("config.json"), json.dumps(payload, indent=1))

    def config(self) -> dict:
        path = self.file("config.json")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RunError(f"{path} cannot be read ({err.__class__.__name__}); is {self.path} a c2f run?") from None

    def write_skipped(self, skipped: dict[str, dict[str, str]]) -> None:
        """skipped.csv: every manifest video left out ({split: {video_id: why}})."""
        rows = [(vid, split, why) for split, videos in skipped.items() for vid, why in videos.items()]
        if rows:
            atomic_write_csv(self.file("skipped.csv"), ["video_id", "split", "reason"], rows)

    # -------------------------------------------------------------- while training

    def append_log(self, row: dict) -> None:
        """One row of log.csv (stage, epoch, lr, loss, seconds, what else the head logs), flushed as it is
        written; the same scalars to RUN/tensorboard when TensorBoard is installed (`pip install c2f[tensorboard]`)."""
        logs = {k: v for k, v in row.items() if k not in LOG_COLUMNS}
        values = {k: row.get(k, "") for k in LOG_COLUMNS if k != "logs"}
        step = sum(1 for _ in open(self.file("log.csv"), encoding="utf-8")) - 1 if self.file("log.csv").exists() else 0
        append_csv(self.file("log.csv"), LOG_COLUMNS,
                   [[_rounded(values[k]) for k in LOG_COLUMNS[:-1]] + [json.dumps(_rounded(logs))]])
        writer = self.tensorboard()
        if writer:
            for key, value in ({k: values[k] for k in ("lr", "train_loss")} | logs).items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"{key}/{values['stage']}", value, max(step, 0))
            writer.flush()

    def tensorboard(self):
        """A SummaryWriter on RUN/tensorboard, or None when TensorBoard is not installed."""
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tensorboard = False
            else:
                self._tensorboard = SummaryWriter(str(self.file("tensorboard")))
        return self._tensorboard or None

    def save_checkpoint(self, state: dict) -> None:
        atomic_write(self.file("checkpoint.pt"), lambda tmp: torch.save(state, tmp))

    def checkpoint(self, device="cpu") -> dict | None:
        path = self.file("checkpoint.pt")
        return torch.load(path, weights_only=True, map_location=device) if path.exists() else None

    def restart_log(self) -> None:
        """A run that starts over (not resumed) starts its log over too."""
        self.file("log.csv").unlink(missing_ok=True)

    # -------------------------------------------------------------- results

    def save_head(self, head: Head) -> None:
        atomic_write(self.file("head.pt"), lambda tmp: torch.save(head.state_dict(), tmp))

    def write_results(self, result: EvalResult, metrics: dict, classes: list[str]) -> None:
        """predictions.csv, decisions.csv and, last (it marks the run finished), metrics.json; then the
        temporary files go."""
        fine = result.fine_count()
        atomic_write_csv(self.file("predictions.csv"), ["video_id", "label", "pred", "fine_count", "gflops"],
                         ([video_id, "|".join(classes[k] for k in np.flatnonzero(result.targets[i])),
                           classes[int(result.scores[i].argmax())], int(fine[i]), f"{result.gflops[i]:.4f}"]
                          for i, video_id in enumerate(result.video_ids)))
        atomic_write_csv(self.file("decisions.csv"), decision_columns(result.patches is not None, len(result.fine_roles())),
                         decision_rows(result))
        atomic_write_text(self.file("metrics.json"), json.dumps(metrics, indent=1))
        for name in TEMPORARY:
            self.file(name).unlink(missing_ok=True)

    def metrics(self) -> dict:
        return json.loads(self.file("metrics.json").read_text(encoding="utf-8"))

    def has(self, name: str) -> bool:
        return self.file(_known(name)).exists()

    def table(self, name: str):
        """One of the run's CSV files (log.csv, predictions.csv, decisions.csv, curve.csv, online.csv,
        skipped.csv) as a pandas DataFrame; None when the run has none."""
        import pandas as pd            # here: training writes these files without pandas
        return pd.read_csv(self.file(name)) if self.has(name) else None

    def head_sha256(self) -> str:
        """What the trained head is (prediction records it, to resume only with the same head)."""
        return sha256_of(self.file("head.pt"))

    @property
    def finished_at(self) -> float:
        """When training finished (metrics.json's modification time, seconds since the epoch)."""
        return self.file("metrics.json").stat().st_mtime

    def write_table(self, name: str, rows: list[dict]) -> None:
        """A CSV of dict rows (online.csv, curve.csv)."""
        atomic_write_csv(self.file(name), list(rows[0]), ([r[k] for k in rows[0]] for r in rows))

    # -------------------------------------------------------------- reading a finished run

    def require_finished(self) -> None:
        if not self.file("head.pt").exists() or not self.file("config.json").exists():
            raise RunError(f"{self.path} is not a finished run (needs config.json and head.pt)",
                           "give the --out of a finished c2f train-head")

    def load(self, device="cpu") -> tuple[TrainConfig, Head, list[str]]:
        """The trained head, its settings and classes (weights loaded with weights_only=True)."""
        self.require_finished()
        saved = self.config()
        cfg = TrainConfig.from_dict(saved["settings"])
        shapes = {role: s["frame_shape"] for role, s in saved["feature_sets"].items()}
        attrs = {role: s["attrs"] for role, s in saved["feature_sets"].items()}
        head = build_head(cfg, HeadDims.of(shapes, attrs, len(saved["classes"])))
        head.load_state_dict(torch.load(self.file("head.pt"), weights_only=True, map_location=device))
        return cfg, head.to(device), saved["classes"]


def load_run(run_dir: str | Path, device="cpu") -> tuple[TrainConfig, Head, list[str]]:
    """A finished run's settings, trained head and classes."""
    return RunDir(run_dir).load(device)


def _repeatable(settings: dict) -> dict:
    """The settings that make a run what it is (not how it was invoked), as JSON holds them."""
    return {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in NOT_REPEATED}


def _rounded(value):
    """Floats to 6 significant digits, for files people read."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def finished_runs(runs_dir: str | Path) -> list[tuple[RunDir, dict, dict]]:
    """(run folder, config.json, metrics.json) of every finished run under runs_dir."""
    found = []
    for metrics_path in sorted(Path(runs_dir).rglob("metrics.json")):
        run = RunDir(metrics_path.parent)
        if run.file("config.json").exists():
            found.append((run, run.config(), run.metrics()))
    return found
