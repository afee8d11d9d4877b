"""Early stopping: a seeded part of the training split held out, scored after every epoch on an
exponential moving average of the weights (errors first, then loss), the best weights kept."""
from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config import TrainConfig
from ..data import Batch, VideoSet, length_batches
from ..evaluate import EVAL_BATCH
from ..heads import Head
from ..heads.base import soft_targets

MIN_HOLDOUT = 5          # fewer held-out videos than this tell nothing: train a fixed number of epochs
FALLBACK_EPOCHS = 30     # ... that many (the papers' default)
AVERAGE_EPOCHS = 2       # early stopping scores the weights' moving average over about this many epochs


@dataclass
class Progress:
    """How far a stage is and what early stopping knows: checkpointed after every epoch."""
    stage: int = 0
    epoch: int = 0
    steps: int = 0
    best_score: tuple = (float("inf"), float("inf"))     # held-out (errors, loss)
    best_epoch: int = 0
    since_best: int = 0
    stopped: str = ""                 # why the current stage stops early ("" while it runs)
    final_stopped: str = ""
    best_state: dict | None = None
    history: list = dataclass_field(default_factory=list)
    last_logs: dict = dataclass_field(default_factory=dict)


@torch.no_grad()
def held_out_score(head: Head, videos: VideoSet, index: torch.Tensor, batch_size: int,
                   device: str) -> tuple[float, float]:
    """(errors, cross-entropy) of the head's evaluation-mode predictions (sparse reads, as at test
    time) on the held-out training videos, both per video: lower is better, errors first. Errors
    (1 - top-1, a correct video being one whose highest logit is one of its labels) lead because the
    loss turns up, from growing confidence, epochs before the accuracy stops improving."""
    head.eval()
    errors = loss = 0.0
    for rows in length_batches(videos.lengths[index], batch_size, shuffle=False):
        batch = Batch(videos, index[rows], device)
        logits = head(batch).logits
        loss += float(F.cross_entropy(logits, soft_targets(batch.targets), reduction="sum"))
        errors += float(len(logits) - batch.targets.gather(1, logits.argmax(1, keepdim=True)).gt(0).sum())
    head.train()
    return errors / len(index), loss / len(index)


def split_holdout(videos: VideoSet, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows) of the training split: a seeded random `fraction` held out, none
    when that would be fewer than MIN_HOLDOUT videos."""
    order = torch.randperm(len(videos), generator=torch.Generator().manual_seed(seed + 1))
    held = int(round(fraction * len(videos)))
    if held < MIN_HOLDOUT or held >= len(videos):
        return order.sort().values, torch.zeros(0, dtype=torch.long)
    return order[held:].sort().values, order[:held].sort().values


def plan(cfg: TrainConfig, train: VideoSet) -> tuple[torch.Tensor, torch.Tensor, list[int], str]:
    """(training rows, held-out rows, epochs per stage, how the length is chosen). A single-stage head
    without --epochs holds part of the training split out and trains until it stops improving, at
    most --max-steps steps; otherwise the epochs are fixed (--epochs, --stage-epochs)."""
    everything, none = torch.arange(len(train)), torch.zeros(0, dtype=torch.long)
    if cfg.record.staged:
        epochs = cfg.stage_schedule()[0]
        return everything, none, epochs, "--stage-epochs " + ",".join(map(str, epochs))
    if cfg.epochs is not None:
        return everything, none, [cfg.epochs], f"--epochs {cfg.epochs}"
    fit, holdout = split_holdout(train, cfg.holdout, cfg.seed)
    if len(holdout) == 0:
        return fit, holdout, [FALLBACK_EPOCHS], f"{FALLBACK_EPOCHS} epochs (too few videos to hold some out)"
    cap = math.ceil(cfg.max_steps / math.ceil(len(fit) / cfg.batch_size))
    return fit, holdout, [cap], f"early stopping on {len(holdout)} held-out training videos"


def running_average(head: Head, batches_per_epoch: int) -> AveragedModel:
    """An exponential moving average of the head's weights over about the last two epochs: early
    stopping scores and keeps it rather than the last step's weights, which a small dataset's
    high learning rate makes jump from epoch to epoch (and a small held-out part then picks a lucky
    jump, not a good model)."""
    decay = 1 - 1 / (AVERAGE_EPOCHS * batches_per_epoch)
    return AveragedModel(head, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def early_stopping(progress: Progress, head: Head, train: VideoSet, holdout: torch.Tensor, cfg: TrainConfig,
                    schedule) -> None:
    """After an epoch: the held-out score of `head` (the weights' running average), the best weights
    so far, and whether to stop."""
    errors, loss = held_out_score(head, train, holdout, max(cfg.batch_size, EVAL_BATCH), cfg.device)
    progress.history.append([round(errors, 4), round(loss, 5)])
    schedule.step(loss)
    best_errors, best_loss = progress.best_score
    if errors < best_errors - 1e-6 or (errors <= best_errors + 1e-6 and loss < best_loss - 1e-4):
        progress.best_score, progress.best_epoch, progress.since_best = (errors, loss), progress.epoch + 1, 0
        progress.best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    else:
        progress.since_best += 1
    if progress.since_best >= cfg.patience:
        progress.stopped = f"the held-out score did not improve for {cfg.patience} epochs"
    elif progress.steps >= cfg.max_steps:
        progress.stopped = f"the step budget (--max-steps {cfg.max_steps})"


def stopping_record(progress: Progress, holdout: torch.Tensor) -> dict:
    out = {"last_epoch_logs": progress.last_logs}
    if not len(holdout):
        return out | {"stopped": "after the planned epochs"}
    return out | {"stopped": progress.final_stopped or "the epoch cap", "best_epoch": progress.best_epoch,
                  "held_out_errors": progress.best_score[0], "held_out_loss": progress.best_score[1],
                  "held_out_history": progress.history}

