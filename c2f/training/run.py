"""`c2f train-head`: train one head on the cache's train split, evaluate it, write the run folder."""
from __future__ import annotations

import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from pipeline.core.devices import resolve_device
from pipeline.core.files import sha256_of

from .. import __version__
from ..config import TrainConfig
from ..evaluate import EVAL_BATCH, compute_metrics, run_head
from ..data import VideoSet
from ..heads import Head, build_head
from ..rundir import NOT_REPEATED, RunDir
from .fit import fit
from .inputs import head_dims, load_data
from .operating import calibrate_exit, calibration_batches, measure_on, operating_curve


def absolute(cfg: TrainConfig) -> TrainConfig:
    """The settings with their paths made absolute (config.json repeats the run from any folder)."""
    return replace(cfg, manifest=str(Path(cfg.manifest).resolve()), cache=str(Path(cfg.cache).resolve()),
                   out=str(Path(cfg.out).resolve()))


def config_payload(cfg: TrainConfig, settings: dict, sets: dict, classes: list[str], head: Head,
                   command: str | None) -> dict:
    """config.json: every setting (a valid --config), the feature sets used with their attributes, the
    manifest's sha256, the classes, the head's counted costs and where the run came from."""
    settings = {k: v for k, v in settings.items() if k not in NOT_REPEATED}
    return {"settings": settings,
            "feature_sets": {role: {"name": info.name, "attrs": info.attrs, "frame_shape": list(info.frame_shape)}
                             for role, info in sets.items()},
            "manifest_sha256": sha256_of(cfg.manifest), "classes": classes,
            "head_costs_gmacs": head.costs, "parameters": sum(p.numel() for p in head.parameters()),
            "provenance": {"c2f": __version__, "torch": torch.__version__, "python": platform.python_version(),
                           "device": cfg.device, "command": command or shlex.join(sys.argv),
                           "cwd": str(Path.cwd()),
                           "weights": {info.name: {"sha256_or_name": info.attrs.get("weights"),
                                                   "file": info.attrs.get("weights_file")}
                                       for info in sets.values()}}}


def calibration_record(head: Head, chooser: VideoSet, chosen_on: str, classes: list[str], device: str) -> dict:
    """metrics.json's `calibration`: where the run's operating points are chosen (`train`: the training
    videos, or `calibration`: the part held out of them; never the eval split), how many of them, and
    the head as trained measured there (what a point of curve.csv is compared with)."""
    batches = calibration_batches(chooser, device)
    return {"chosen_on": chosen_on, "videos": sum(len(b) for b in batches)} | measure_on(head, batches, classes)


def train_head(cfg: TrainConfig, command: str | None = None) -> dict:
    """Train, evaluate, write the run folder; returns metrics.json's content. `command`: the command line
    that asked for it (config.json's provenance; default: this process's)."""
    started = time.time()
    cfg = absolute(cfg)
    settings = cfg.to_dict()          # as given (device "auto" stays "auto": config.json repeats the run anywhere)
    # the device this run uses; one that is not there stops here, before the folder is touched
    cfg = replace(cfg, device=str(resolve_device(cfg.device)))
    run = RunDir(cfg.out)
    train, calibration, evaluation, classes = load_data(cfg)
    resume = run.claim(settings, cfg.overwrite)
    if not resume:
        run.restart_log()
    dims = head_dims(train, classes)
    run.write_config(config_payload(cfg, settings, train.sets, classes, build_head(cfg, dims), command))
    skipped = {cfg.train_split: train.skipped, cfg.eval_split: evaluation.skipped}
    run.write_skipped(skipped | ({"calibration": calibration.skipped} if calibration is not None else {}))
    head, training = fit(cfg, train, dims, resume)
    chooser, chosen_on = (calibration, "calibration") if calibration is not None else (train, "train")
    if cfg.exit_budget is not None:
        training["exit_threshold"] = calibrate_exit(head, chooser, cfg.exit_budget, cfg.device)
    run.save_head(head)
    eval_started = time.time()
    result = run_head(head, evaluation, batch_size=max(cfg.batch_size, EVAL_BATCH), device=cfg.device,
                      progress=cfg.progress)
    eval_seconds = time.time() - eval_started
    metrics = compute_metrics(result, cfg.method, cfg.eval_split, classes)
    # head seconds per video on cached features (LiteEval Table 10 adds the backbones' time)
    metrics |= {"train_videos": len(train), "skipped_videos": len(evaluation.skipped),
                "head_seconds_per_video": eval_seconds / len(evaluation), "seconds": round(time.time() - started, 1),
                "training": training, **training.pop("head"),
                "calibration": calibration_record(head, chooser, chosen_on, classes, cfg.device)}
    if cfg.curve and (head.knobs() or cfg.record.budgeted):
        run.write_table("curve.csv", operating_curve(head, chooser, evaluation, cfg.record.budgeted, cfg.device))
    run.write_results(result, metrics, classes)
    return metrics
