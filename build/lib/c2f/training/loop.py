"""The trainer's loop, as torchvision's video_classification reference: the trainer owns the loop and
the optimiser (`train_one_epoch(head, optimizer, ...)`), a head computes losses. The head's stages
(one for most; AdaFocus has three) each have their parameters and optimiser; batches hold videos
of similar length. After every epoch a row goes to log.csv and a checkpoint is written, so a run
killed midway resumes from that (stage, epoch) when the same command is given again."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from pipeline.core.errors import TrainingError

from ..config import TrainConfig
from ..data import Batch, VideoSet, length_batches
from ..evaluate import EVAL_BATCH
from ..heads import Head
from ..heads.base import Stage
from ..rundir import RunDir
from .stopping import Progress, early_stopping, plan, running_average, stopping_record

log = logging.getLogger(__name__)


def make_optimizer(stage: Stage, cfg: TrainConfig, batches_per_epoch: int, automatic: bool):
    """SGD with cosine annealing for AdaFocus's classifier stages; Adam otherwise, its rate halved
    when the held-out loss stops improving (automatic length) or constant (fixed epochs)."""
    if stage.optimizer == "sgd":       # AdaFocus's classifier stages: SGD, Nesterov 0.9, cosine annealing
        optimizer = torch.optim.SGD(stage.parameters, lr=stage.lr, momentum=0.9, nesterov=True,
                                    weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, stage.epochs * batches_per_epoch))
        return optimizer, schedule
    optimizer = torch.optim.Adam(stage.parameters, lr=stage.lr, weight_decay=cfg.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, cfg.patience // 3))
    return optimizer, plateau if automatic else None


def train_one_epoch(head: Head, optimizer, schedule, batches, grad_clip: float, bar,
                    averaged: AveragedModel | None = None) -> dict[str, float]:
    """One pass over the batches: an optimiser step after each loss the head gives; returns the
    epoch's mean of the loss and of what the head logs (each batch's last, weighted by its videos)."""
    totals, seen = {}, 0
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    per_step = schedule is not None and not isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for batch in batches:
        for loss, logs in head.losses(batch):
            if not torch.isfinite(loss.detach()):
                raise TrainingError(f"the loss became {float(loss.detach())}", "lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimizer.step()
            if averaged is not None:
                averaged.update_parameters(head)
        if per_step:
            schedule.step()
        seen += len(batch)
        for k, v in ({"loss": float(loss.detach())} | logs).items():
            totals[k] = totals.get(k, 0.0) + v * len(batch)
        bar.update()
    return {k: v / max(1, seen) for k, v in totals.items()}


def freeze_outside(head: Head, stage: Stage) -> None:
    """Only the stage's parameters get gradients."""
    trained = {id(p) for p in stage.parameters}
    for p in head.parameters():
        p.requires_grad_(id(p) in trained)


def _checkpoint(run: RunDir, progress: Progress, head: Head, optimiser: tuple, generator: torch.Generator,
                plan: list) -> None:
    optimizer, schedule, averaged = optimiser
    run.save_checkpoint({"plan": plan, "progress": asdict(progress),
                         "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict() if schedule is not None else {},
                         "averaged": averaged.state_dict() if averaged is not None else {},
                         "generator": generator.get_state(), "torch_rng": torch.get_rng_state()})


def train_stages(head: Head, train: VideoSet, cfg: TrainConfig, generator: torch.Generator,
                 checkpoint: dict | None = None, phase: str = "") -> dict:
    """Every stage of the head (one for most), each epoch logged and checkpointed: a rerun resumes where
    it stopped. `phase` names this training in log.csv (a rate tried, the refit). Returns what was
    chosen and why training stopped (metrics.json's `training`)."""
    run = RunDir(cfg.out)
    fit, holdout, epochs, rule = plan(cfg, train)
    stages = head.training_stages(epochs, cfg.stage_schedule()[1])
    per_epoch = math.ceil(len(fit) / cfg.batch_size)
    progress = Progress(**checkpoint["progress"]) if checkpoint else Progress()
    bar = tqdm(total=sum(s.epochs for s in stages) * per_epoch, initial=progress.steps, unit="batch",
               desc=f"train {cfg.method}", disable=not cfg.progress)
    for number, stage in enumerate(stages[progress.stage:], start=progress.stage):
        head.set_stage(stage.name)
        freeze_outside(head, stage)
        optimizer, schedule = make_optimizer(stage, cfg, per_epoch, automatic=len(holdout) > 0)
        if progress.epoch:      # resumed inside this stage (a finished stage's optimiser is not the next one's)
            optimizer.load_state_dict(checkpoint["optimizer"])
            if schedule is not None:
                schedule.load_state_dict(checkpoint["schedule"])
        averaged = running_average(head, per_epoch) if len(holdout) else None
        if averaged is not None and progress.epoch:
            averaged.load_state_dict(checkpoint["averaged"])
        label = " ".join(filter(None, [f"train {cfg.method}", phase, f"stage {stage.name}" if len(stages) > 1 else ""]))
        finished = False
        while not finished:
            started, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            _one_epoch(head, train, fit, cfg, generator, (optimizer, schedule, averaged), bar, progress, stage, label,
                       automatic=len(holdout) > 0)
            if averaged is not None:
                early_stopping(progress, averaged.module, train, holdout, cfg, schedule)
            run.append_log(_log_row(progress, stage, phase, lr, time.perf_counter() - started))
            progress.epoch += 1
            finished = progress.epoch >= stage.epochs or bool(progress.stopped)
            if finished:
                _finish_stage(head, stage, train, fit, cfg, progress)
            _checkpoint(run, progress, head, (optimizer, schedule, averaged), generator, [cfg.lr, cfg.epochs])
    for p in head.parameters():
        p.requires_grad_(True)
    bar.close()
    return {"length": rule, "batch_size": cfg.batch_size, "steps": progress.steps, "fit_videos": len(fit),
            "held_out_videos": len(holdout), **stopping_record(progress, holdout)}


def _log_row(progress: Progress, stage: Stage, phase: str, lr: float, seconds: float) -> dict:
    """log.csv's row for the epoch just trained: its rate (at its start), mean loss and the head's own
    logs; the held-out score when the length is automatic."""
    logs = dict(progress.last_logs)
    score = progress.history[-1] if progress.history else ("", "")
    return {"stage": " ".join(filter(None, [phase, stage.name])), "epoch": progress.epoch + 1, "lr": lr,
            "train_loss": logs.pop("loss", ""), "held_out_errors": score[0], "held_out_loss": score[1],
            "seconds": seconds, **logs}


def _one_epoch(head: Head, train: VideoSet, fit: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
               optimiser: tuple, bar, progress: Progress, stage: Stage, label: str, automatic: bool) -> None:
    head.train()
    head.set_progress(progress.epoch / max(1, stage.epochs - 1))     # an automatic length anneals over its cap
    if automatic:        # its length is a cap, not a plan: say how the held-out part is doing instead
        best = (f", held-out errors {progress.best_score[0]:.3f} at epoch {progress.best_epoch}"
                if progress.best_epoch else "")
        bar.set_description(f"{label} epoch {progress.epoch + 1}{best}")
    else:
        bar.set_description(f"{label} epoch {progress.epoch + 1}/{stage.epochs}")
    batches = (Batch(train, fit[rows], cfg.device) for rows in
               length_batches(train.lengths[fit], cfg.batch_size, shuffle=True, generator=generator))
    optimizer, schedule, averaged = optimiser
    logs = train_one_epoch(head, optimizer, schedule, batches, cfg.grad_clip, bar, averaged)
    progress.steps += math.ceil(len(fit) / cfg.batch_size)
    progress.last_logs = logs
    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
    log.info("%s epoch %d: %s", label, progress.epoch + 1, {k: round(v, 4) for k, v in logs.items()})


def _finish_stage(head: Head, stage: Stage, train: VideoSet, fit: torch.Tensor, cfg: TrainConfig,
                  progress: Progress) -> None:
    """The best held-out weights back in place, then the head's end-of-stage step (thresholds)."""
    if progress.best_state is not None:
        head.load_state_dict(progress.best_state)
    head.after_stage(stage.name, [Batch(train, fit[rows], cfg.device) for rows in
                                  length_batches(train.lengths[fit], max(cfg.batch_size, EVAL_BATCH), shuffle=False)])
    progress.final_stopped = progress.stopped or progress.final_stopped
    progress.stage, progress.epoch, progress.stopped = progress.stage + 1, 0, ""

