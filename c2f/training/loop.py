"""The trainer's loop, as torchvision's video_classification reference: the trainer owns the loop and
the optimiser (`train_one_epoch(head, optimizer, ...)`), a head computes losses. The head's stages
(one for most; AdaFocus has three) each have their parameters, optimiser and rate schedule
(schedule.py); batches hold videos of similar length. After every epoch a row goes to log.csv and
a checkpoint is written, so a run killed midway resumes from that (stage, epoch) when the same
command is given again, and ends with the same weights as a run that was not interrupted."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field

import torch
import torch.nn as nn
from tqdm import tqdm

from pipeline.core.errors import TrainingError

from ..config import TrainConfig
from ..data import Batch, VideoSet, length_batches
from ..evaluate import EVAL_BATCH
from ..heads import Head
from ..blocks.head import Stage
from ..rundir import RunDir
from .schedule import make_optimizer, planned_epochs, stage_optimizer, width_scaled

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far training is: checkpointed after every epoch."""
    stage: int = 0
    epoch: int = 0               # epochs done in the current stage
    steps: int = 0               # optimisation steps (batches) done, all stages
    seconds: float = 0.0         # spent training, all stages (a resumed run adds its own)
    last_logs: dict = dataclass_field(default_factory=dict)


def train_one_epoch(head: Head, optimizer, schedule, batches, grad_clip: float, bar) -> dict[str, float]:
    """One pass over the batches: an optimiser step after each loss the head gives, the rate
    schedule's step after each batch; returns the epoch's mean of the loss and of what the head logs
    (each batch's last, weighted by its videos)."""
    totals, seen = {}, 0
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for batch in batches:
        for loss, logs in head.losses(batch):
            if not torch.isfinite(loss.detach()):
                raise TrainingError(f"the loss became {float(loss.detach())}", "lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimizer.step()
        if schedule is not None:
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


def _checkpoint(run: RunDir, progress: Progress, head: Head, optimizer, schedule, generator: torch.Generator,
                plan: list) -> None:
    run.save_checkpoint({"plan": plan, "progress": asdict(progress),
                         "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict() if schedule is not None else {},
                         "generator": generator.get_state(), "torch_rng": torch.get_rng_state()})


def train_stages(head: Head, train: VideoSet, cfg: TrainConfig, generator: torch.Generator,
                 checkpoint: dict | None = None) -> dict:
    """Every stage of the head (one for most), each epoch logged and checkpointed: a rerun resumes where
    it stopped. Returns how it was trained (metrics.json's `training`)."""
    run = RunDir(cfg.out)
    epochs, rule = planned_epochs(cfg, len(train))
    stages = head.training_stages(epochs, cfg.stage_schedule()[1])
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    progress = Progress(**checkpoint["progress"]) if checkpoint else Progress()
    bar = tqdm(total=sum(s.epochs for s in stages) * per_epoch, initial=progress.steps, unit="batch",
               desc=f"train {cfg.method}", disable=not cfg.progress)
    for stage in stages[progress.stage:]:
        head.set_stage(stage.name)
        freeze_outside(head, stage)
        optimizer, schedule = make_optimizer(stage, cfg, per_epoch)
        if progress.epoch:      # resumed inside this stage (a finished stage's optimiser is not the next one's)
            optimizer.load_state_dict(checkpoint["optimizer"])
            if schedule is not None:
                schedule.load_state_dict(checkpoint["schedule"])
        label = " ".join(filter(None, [f"train {cfg.method}", f"stage {stage.name}" if len(stages) > 1 else ""]))
        for _ in range(progress.epoch, stage.epochs):
            started, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            _one_epoch(head, train, cfg, generator, optimizer, schedule, bar, progress, stage, label)
            seconds = time.perf_counter() - started
            progress.seconds += seconds
            run.append_log(_log_row(progress, stage, lr, seconds))
            progress.epoch += 1
            if progress.epoch == stage.epochs:
                _finish_stage(head, stage, train, cfg, progress)
            _checkpoint(run, progress, head, optimizer, schedule, generator, epochs)
    for p in head.parameters():
        p.requires_grad_(True)
    bar.close()
    return _record(cfg, stages, rule, progress)


def _record(cfg: TrainConfig, stages: list[Stage], rule: str, progress: Progress) -> dict:
    """metrics.json's `training`: the schedule, rate, epochs (a list for several stages) and how they were
    set, weight decay, batch size, steps and seconds, and the last epoch's mean of what the head logs."""
    steps = " and ".join(f"{share:.0%}" for share in cfg.rate_steps)
    names = {"adamw": "AdamW, one cycle (warm-up, cosine annealing)", "adam": "Adam, constant rate",
             "adam-steps": f"Adam, L2 weight decay, the rate / 10 at {steps} of the steps",
             "sgd-constant": "SGD with momentum 0.9, L2 weight decay, constant rate",
             "sgd-nesterov-steps": f"SGD with Nesterov momentum 0.9, L2 weight decay, the rate / 10 at {steps} of the "
                                   "steps",
             "sgd": "SGD with Nesterov momentum, cosine annealing"}
    one = len(stages) == 1

    def each(values: list):
        return values[0] if one else values
    kinds = [names[stage_optimizer(s, cfg)] for s in stages]
    return {"schedule": "; ".join(kind if one else f"{s.name}: {kind}" for s, kind in zip(stages, kinds)),
            "length": rule, "epochs": each([s.epochs for s in stages]), "lr": each([s.lr for s in stages]),
            "width_scaled_rate": each([width_scaled(s, cfg) for s in stages]),
            "weight_decay": cfg.setting("weight_decay", 0.0),
            "batch_size": cfg.batch_size, "steps": progress.steps, "seconds": round(progress.seconds, 2),
            "last_epoch_logs": progress.last_logs}


def _log_row(progress: Progress, stage: Stage, lr: float, seconds: float) -> dict:
    """log.csv's row for the epoch just trained: its rate (at its start; --lr's group), mean loss and the
    head's own logs."""
    logs = dict(progress.last_logs)
    return {"stage": stage.name, "epoch": progress.epoch + 1, "lr": lr, "train_loss": logs.pop("loss", ""),
            "seconds": seconds, **logs}


def _one_epoch(head: Head, train: VideoSet, cfg: TrainConfig, generator: torch.Generator, optimizer, schedule, bar,
               progress: Progress, stage: Stage, label: str) -> None:
    head.train()
    head.set_progress(progress.epoch / max(1, stage.epochs - 1))     # annealed temperatures follow the stage
    bar.set_description(f"{label} epoch {progress.epoch + 1}/{stage.epochs}")
    batches = (Batch(train, rows, cfg.device) for rows in
               length_batches(train.lengths, cfg.batch_size, shuffle=True, generator=generator))
    logs = train_one_epoch(head, optimizer, schedule, batches, cfg.grad_clip, bar)
    progress.steps += math.ceil(len(train) / cfg.batch_size)
    progress.last_logs = logs
    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
    log.info("%s epoch %d: %s", label, progress.epoch + 1, {k: round(v, 4) for k, v in logs.items()})


def _finish_stage(head: Head, stage: Stage, train: VideoSet, cfg: TrainConfig, progress: Progress) -> None:
    """The head's end-of-stage step (thresholds), then the next stage."""
    head.after_stage(stage.name, [Batch(train, rows, cfg.device) for rows in
                                  length_batches(train.lengths, max(cfg.batch_size, EVAL_BATCH), shuffle=False)])
    progress.stage, progress.epoch = progress.stage + 1, 0
