"""`c2f train-head`: train one head on the cache's train split, evaluate it, write the run.

One loop for every method, as torchvision's video_classification reference: the trainer owns
the loop and the optimiser (`train_one_epoch(head, optimizer, ...)`), a head computes losses.
The head's stages (one for most; AdaFocus has three) each have their parameters and optimiser;
batches hold videos of similar length. After every epoch a checkpoint is written, so a run
killed midway resumes from that (stage, epoch) when the same command is given again.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from dataclasses import field as dataclass_field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from pipeline.cache import Cache, attr
from pipeline.files import atomic_write, atomic_write_text
from pipeline.manifest import read_manifest

from .config import DEFAULT_LR, LR_CANDIDATES, TrainConfig
from .data import Batch, CacheError, VideoSet, length_batches, load_videos
from .evaluate import compute_metrics, run_head, write_run_files
from .heads import Head, HeadDims, build_head
from .heads.base import Stage, soft_targets
from .runs import prepare_run_dir, write_config, write_skipped

log = logging.getLogger(__name__)
MIN_HOLDOUT = 5          # fewer held-out videos than this tell nothing: train a fixed number of epochs
FALLBACK_EPOCHS = 30     # ... that many (the papers' default)
AVERAGE_EPOCHS = 2       # early stopping scores the weights' moving average over about this many epochs


def _summarise_skipped(videos: VideoSet, split: str) -> None:
    if videos.skipped:
        shown = "; ".join(f"{v}: {why}" for v, why in list(videos.skipped.items())[:5])
        more = f" (+{len(videos.skipped) - 5} more)" if len(videos.skipped) > 5 else ""
        log.warning("%d %s videos skipped (all listed in RUN/skipped.csv): %s%s", len(videos.skipped), split,
                    shown, more)


def load_data(cfg: TrainConfig) -> tuple[VideoSet, VideoSet, list[str]]:
    """The train and evaluation splits, with the feature sets the method reads (each index parsed once)."""
    roles, cache = cfg.feature_sets(), Cache(cfg.cache)
    manifest = read_manifest(cfg.manifest, check_paths=False)
    classes = manifest.classes()
    splits = []
    for split in (cfg.train_split, cfg.eval_split):
        if splits and split == cfg.train_split:     # evaluating on the training split: load it once
            splits.append(splits[0])
            break
        videos = load_videos(manifest, split, cache, roles, classes)
        _summarise_skipped(videos, split)
        if len(videos) == 0:
            raise CacheError(f"no {split} video of {cfg.manifest} has features in {cfg.cache} "
                             f"({len(videos.skipped)} skipped, {len(manifest.split(split))} in the manifest)")
        check_shapes(cfg, videos)
        splits.append(videos)
    warn_mixed_decoding(splits[0])
    train, evaluation = splits
    unseen = [c for c, n in zip(classes, train.targets.sum(0).tolist()) if n == 0]
    if unseen:
        log.warning("%d classes have no training video (never predicted well): %s", len(unseen),
                    ", ".join(unseen[:10]))
    return train, evaluation, classes


def check_shapes(cfg: TrainConfig, videos: VideoSet) -> None:
    """Each role's feature set has the kind the method reads; videos with fewer frames than
    --frames are counted when the method samples segments (they repeat frames).

    AdaFocus's glance map may come from a smaller input than its patch grid (the paper glances
    at low resolution): phase one resizes every set from the same centre-cropped square, so
    the map's cells and the grid's candidates cover the same part of the frame whatever the
    sizes, and the timestamps check pairs the same frames."""
    record = cfg.record
    for role, info in videos.sets.items():
        need = record.roles[role]
        if info.kind != need.kind:
            raise CacheError(f"{cfg.method} needs a {need.kind} feature set for --{need.option}; {info.name} is a "
                             f"{info.kind} set (per-frame shape {info.frame_shape})")
    if record.role_of_kind("grid"):
        short = int((videos.lengths < cfg.frames).sum())
        if short:
            log.warning("%d videos have fewer cached frames than --frames %d: their segments repeat frames "
                        "(a frame or patch read twice is charged once)", short, cfg.frames)


def warn_mixed_decoding(videos: VideoSet) -> None:
    """Sets of one run decoded differently (seek mode, preprocessing, canvas) still pair by
    timestamps, but their features describe differently prepared frames: say so."""
    for key in ("seek", "preprocess", "canvas"):
        values = {role: attr(info.attrs, key) for role, info in videos.sets.items()}
        if len(set(map(str, values.values()))) > 1:
            log.warning("the feature sets of this run were decoded differently (%s: %s)", key,
                        ", ".join(f"{videos.sets[r].name} {v}" for r, v in values.items()))


def head_dims(videos: VideoSet, classes: list[str]) -> HeadDims:
    return HeadDims.of({role: info.frame_shape for role, info in videos.sets.items()},
                       {role: info.attrs for role, info in videos.sets.items()}, len(classes))


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
    epoch's mean of what the head logs (each batch's last logs, weighted by its videos)."""
    totals, seen = {}, 0
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    per_step = schedule is not None and not isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for batch in batches:
        for loss, logs in head.losses(batch):
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"the loss became {float(loss.detach())}; lower the learning rate")
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
        for k, v in logs.items():
            totals[k] = totals.get(k, 0.0) + v * len(batch)
        bar.update()
    return {k: v / max(1, seen) for k, v in totals.items()}


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


def _checkpoint(run: Path, progress: Progress, head: Head, optimiser: tuple, generator: torch.Generator,
                plan: list) -> None:
    optimizer, schedule, averaged = optimiser
    state = {"plan": plan, "progress": asdict(progress),
             "head": head.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict() if schedule is not None else {},
             "averaged": averaged.state_dict() if averaged is not None else {},
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
    atomic_write(run / "checkpoint.pt", lambda tmp: torch.save(state, tmp))


def freeze_outside(head: Head, stage: Stage) -> None:
    """Only the stage's parameters get gradients."""
    trained = {id(p) for p in stage.parameters}
    for p in head.parameters():
        p.requires_grad_(id(p) in trained)


def _plan(cfg: TrainConfig, train: VideoSet) -> tuple[torch.Tensor, torch.Tensor, list[int], str]:
    """(training rows, held-out rows, epochs per stage, how the length is chosen). A single-stage head
    without --epochs holds part of the training split out and trains until it stops improving, at
    most --max-steps steps; otherwise the epochs are fixed (--epochs, --stage-epochs)."""
    everything, none = torch.arange(len(train)), torch.zeros(0, dtype=torch.long)
    if cfg.record.staged:
        return everything, none, list(cfg.stage_epochs), "--stage-epochs " + ",".join(map(str, cfg.stage_epochs))
    if cfg.epochs is not None:
        return everything, none, [cfg.epochs], f"--epochs {cfg.epochs}"
    fit, holdout = split_holdout(train, cfg.holdout, cfg.seed)
    if len(holdout) == 0:
        return fit, holdout, [FALLBACK_EPOCHS], f"{FALLBACK_EPOCHS} epochs (too few videos to hold some out)"
    cap = math.ceil(cfg.max_steps / math.ceil(len(fit) / cfg.batch_size))
    return fit, holdout, [cap], f"early stopping on {len(holdout)} held-out training videos"


def _running_average(head: Head, batches_per_epoch: int) -> AveragedModel:
    """An exponential moving average of the head's weights over about the last two epochs: early
    stopping scores and keeps it rather than the last step's weights, which a small dataset's
    high learning rate makes jump from epoch to epoch (and a small held-out part then picks a lucky
    jump, not a good model)."""
    decay = 1 - 1 / (AVERAGE_EPOCHS * batches_per_epoch)
    return AveragedModel(head, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _early_stopping(progress: Progress, head: Head, train: VideoSet, holdout: torch.Tensor, cfg: TrainConfig,
                    schedule) -> None:
    """After an epoch: the held-out score of `head` (the weights' running average), the best weights
    so far, and whether to stop."""
    errors, loss = held_out_score(head, train, holdout, max(cfg.batch_size, 256), cfg.device)
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


def train_stages(head: Head, train: VideoSet, cfg: TrainConfig, generator: torch.Generator,
                 checkpoint: dict | None = None) -> dict:
    """Every stage of the head (one for most), each epoch checkpointed: a rerun resumes where it stopped.
    Returns what was chosen and why training stopped (metrics.json's `training`)."""
    fit, holdout, epochs, rule = _plan(cfg, train)
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
        averaged = _running_average(head, per_epoch) if len(holdout) else None
        if averaged is not None and progress.epoch:
            averaged.load_state_dict(checkpoint["averaged"])
        label = f"train {cfg.method}" + (f" stage {stage.name}" if len(stages) > 1 else "")
        finished = False
        while not finished:
            _one_epoch(head, train, fit, cfg, generator, (optimizer, schedule, averaged), bar, progress, stage, label)
            if averaged is not None:
                _early_stopping(progress, averaged.module, train, holdout, cfg, schedule)
            progress.epoch += 1
            finished = progress.epoch >= stage.epochs or bool(progress.stopped)
            if finished:
                _finish_stage(head, stage, train, fit, cfg, progress)
            _checkpoint(Path(cfg.out), progress, head, (optimizer, schedule, averaged), generator,
                        [cfg.lr, cfg.epochs])
    for p in head.parameters():
        p.requires_grad_(True)
    bar.close()
    return {"length": rule, "batch_size": cfg.batch_size, "steps": progress.steps, "fit_videos": len(fit),
            "held_out_videos": len(holdout), **_stopping(progress, holdout)}


def _one_epoch(head: Head, train: VideoSet, fit: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
               optimiser: tuple, bar, progress: Progress, stage: Stage, label: str) -> None:
    head.train()
    head.set_progress(progress.epoch / max(1, stage.epochs - 1))     # an automatic length anneals over its cap
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
                                  length_batches(train.lengths[fit], max(cfg.batch_size, 256), shuffle=False)])
    progress.final_stopped = progress.stopped or progress.final_stopped
    progress.stage, progress.epoch, progress.stopped = progress.stage + 1, 0, ""


def _stopping(progress: Progress, holdout: torch.Tensor) -> dict:
    out = {"last_epoch_logs": progress.last_logs}
    if not len(holdout):
        return out | {"stopped": "after the planned epochs"}
    return out | {"stopped": progress.final_stopped or "the epoch cap", "best_epoch": progress.best_epoch,
                  "held_out_errors": progress.best_score[0], "held_out_loss": progress.best_score[1],
                  "held_out_history": progress.history}


def automatic_length(cfg: TrainConfig, train: VideoSet) -> bool:
    """Early stopping on a held-out part (_plan holds one out: a single-stage head, no --epochs,
    enough videos)."""
    return len(_plan(cfg, train)[1]) > 0


def _fit_at(cfg: TrainConfig, train: VideoSet, dims: HeadDims, resume: bool) -> tuple[Head, dict]:
    """The head trained at cfg.lr for cfg.epochs (None: until the held-out part stops improving),
    resumed from RUN/checkpoint.pt when it was interrupted with that plan."""
    torch.manual_seed(cfg.seed)
    head = build_head(cfg, dims).to(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    checkpoint, path = None, Path(cfg.out) / "checkpoint.pt"
    if resume and path.exists():
        checkpoint = torch.load(path, weights_only=True, map_location=cfg.device)
        if checkpoint.get("plan") != [cfg.lr, cfg.epochs]:
            checkpoint = None
    if checkpoint:
        head.load_state_dict(checkpoint["head"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])     # Gumbel noise and sampled actions continue as they would have
        where = checkpoint["progress"]
        log.warning("resuming %s at stage %d, epoch %d", cfg.out, where["stage"] + 1, where["epoch"] + 1)
    training = train_stages(head, train, cfg, generator, checkpoint)
    return head, training | {"lr": cfg.lr, "head": head.summary()}


def fit(cfg: TrainConfig, train: VideoSet, dims: HeadDims, resume: bool) -> tuple[Head, dict]:
    """The trained head and how it was trained. With an automatic length, each rate (LR_CANDIDATES
    without --lr) trains on the fit part until the held-out part stops improving; the rate with the
    best held-out score (fewest errors, then lowest loss) wins, and the head is trained again on the
    whole training split, at that rate, for the epochs its best score took (the held-out videos are
    the user's too). Finished candidates are kept in RUN/lr_search.json: a resumed run skips them."""
    if not automatic_length(cfg, train):
        return _fit_at(replace(cfg, lr=cfg.lr or DEFAULT_LR), train, dims, resume)
    rates = LR_CANDIDATES if cfg.lr is None else (cfg.lr,)
    search_file = Path(cfg.out) / "lr_search.json"
    tried = json.loads(search_file.read_text()) if resume and search_file.exists() else {}
    for lr in rates:
        if str(lr) not in tried:
            tried[str(lr)] = _fit_at(replace(cfg, lr=lr), train, dims, resume)[1]
            atomic_write_text(search_file, json.dumps(tried))
    scores = {lr: (tried[str(lr)]["held_out_errors"], tried[str(lr)]["held_out_loss"]) for lr in rates}
    best = min(rates, key=scores.get)
    epochs = tried[str(best)]["best_epoch"]
    head, refit = _fit_at(replace(cfg, lr=best, epochs=epochs), train, dims, resume)
    info = tried[str(best)] | {"head": refit["head"], "steps": tried[str(best)]["steps"] + refit["steps"],
                               "refit": f"{epochs} epochs at lr {best} on all {len(train)} training videos"}
    if len(rates) > 1:
        info["lr_search"] = {str(lr): {"held_out_errors": round(errors, 4), "held_out_loss": round(loss, 5)}
                             for lr, (errors, loss) in scores.items()}
    return head, info


def train_head(cfg: TrainConfig) -> dict:
    """Train, evaluate, write the run directory; returns metrics.json's content."""
    started = time.time()
    resume = prepare_run_dir(cfg)
    train, evaluation, classes = load_data(cfg)
    dims = head_dims(train, classes)
    write_config(cfg, train.sets, classes, build_head(cfg, dims))
    write_skipped(Path(cfg.out), {cfg.train_split: train.skipped, cfg.eval_split: evaluation.skipped})
    head, training = fit(cfg, train, dims, resume)
    atomic_write(Path(cfg.out) / "head.pt", lambda tmp: torch.save(head.state_dict(), tmp))
    eval_started = time.time()
    result = run_head(head, evaluation, batch_size=max(cfg.batch_size, 256), device=cfg.device,
                      progress=cfg.progress)
    eval_seconds = time.time() - eval_started
    metrics = compute_metrics(result, cfg.method, cfg.eval_split, classes)
    # head seconds per video on cached features (LiteEval Table 10 adds the backbones' time)
    metrics |= {"train_videos": len(train), "skipped_videos": len(evaluation.skipped),
                "head_seconds_per_video": eval_seconds / len(evaluation), "seconds": round(time.time() - started, 1),
                "training": training, **training.pop("head")}
    write_run_files(Path(cfg.out), result, metrics, classes)
    for name in ("checkpoint.pt", "lr_search.json"):
        (Path(cfg.out) / name).unlink(missing_ok=True)
    return metrics
