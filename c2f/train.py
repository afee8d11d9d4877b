"""`c2f train-head`: train one head on the cache's train split, evaluate it, write the run.

One loop for every method, as torchvision's video_classification reference: the trainer owns
the loop and the optimiser (`train_one_epoch(head, optimizer, ...)`), a head computes losses.
The head's stages (one for most; AdaFocus has three) each have their parameters and optimiser;
batches hold videos of similar length. After every epoch a checkpoint is written, so a run
killed midway resumes from that (stage, epoch) when the same command is given again.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from pipeline.cache import Cache, attr
from pipeline.files import atomic_write
from pipeline.manifest import read_manifest

from .config import TrainConfig
from .data import Batch, CacheError, VideoSet, length_batches, load_videos
from .evaluate import compute_metrics, run_head, write_run_files
from .heads import Head, HeadDims, build_head
from .heads.base import Stage
from .runs import prepare_run_dir, write_config, write_skipped

log = logging.getLogger(__name__)


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


def make_optimizer(stage: Stage, cfg: TrainConfig, batches_per_epoch: int):
    if stage.optimizer == "sgd":       # AdaFocus's classifier stages: SGD, Nesterov 0.9, cosine annealing
        optimizer = torch.optim.SGD(stage.parameters, lr=stage.lr, momentum=0.9, nesterov=True,
                                    weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, stage.epochs * batches_per_epoch))
        return optimizer, schedule
    return torch.optim.Adam(stage.parameters, lr=stage.lr, weight_decay=cfg.weight_decay), None


def train_one_epoch(head: Head, optimizer, schedule, batches, grad_clip: float, bar) -> dict[str, float]:
    """One pass over the batches: an optimiser step after each loss the head gives; returns the
    epoch's mean of what the head logs (each batch's last logs, weighted by its videos)."""
    totals, seen = {}, 0
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for batch in batches:
        for loss, logs in head.losses(batch):
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"the loss became {float(loss.detach())}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimizer.step()
        if schedule is not None:
            schedule.step()
        seen += len(batch)
        for k, v in logs.items():
            totals[k] = totals.get(k, 0.0) + v * len(batch)
        bar.update()
    return {k: v / max(1, seen) for k, v in totals.items()}


def _checkpoint(run: Path, number: int, epoch: int, finished: bool, head: Head, optimizer, schedule,
                generator: torch.Generator) -> None:
    state = {"stage": number + 1 if finished else number, "epoch": 0 if finished else epoch + 1,
             "head": head.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict() if schedule is not None else {},
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
    atomic_write(run / "checkpoint.pt", lambda tmp: torch.save(state, tmp))


def _freeze_outside(head: Head, stage: Stage) -> None:
    """Only the stage's parameters get gradients."""
    trained = {id(p) for p in stage.parameters}
    for p in head.parameters():
        p.requires_grad_(id(p) in trained)


def train_stages(head: Head, train: VideoSet, cfg: TrainConfig, generator: torch.Generator,
                 checkpoint: dict | None = None) -> None:
    """Every stage of the head (one for most), each epoch checkpointed: a rerun resumes where it stopped."""
    stages = head.training_stages(*cfg.stage_schedule())
    batches_per_epoch = math.ceil(len(train) / cfg.batch_size)
    start_stage, start_epoch = (checkpoint["stage"], checkpoint["epoch"]) if checkpoint else (0, 0)
    done = (sum(s.epochs for s in stages[:start_stage]) + start_epoch) * batches_per_epoch
    bar = tqdm(total=sum(s.epochs for s in stages) * batches_per_epoch, initial=done, unit="batch",
               desc=f"train {cfg.method}", disable=not cfg.progress)
    for number, stage in enumerate(stages[start_stage:], start=start_stage):
        head.set_stage(stage.name)
        _freeze_outside(head, stage)
        optimizer, schedule = make_optimizer(stage, cfg, batches_per_epoch)
        first_epoch = start_epoch if checkpoint and number == start_stage else 0
        if first_epoch:         # resumed inside this stage (a finished stage's optimiser is not the next one's)
            optimizer.load_state_dict(checkpoint["optimizer"])
            if schedule is not None:
                schedule.load_state_dict(checkpoint["schedule"])
        label = f"train {cfg.method}" + (f" stage {stage.name}" if len(stages) > 1 else "")
        for epoch in range(first_epoch, stage.epochs):
            head.train()
            head.set_progress(epoch / max(1, stage.epochs - 1))
            bar.set_description(f"{label} epoch {epoch + 1}/{stage.epochs}")
            batches = (Batch(train, index, cfg.device) for index in
                       length_batches(train.lengths, cfg.batch_size, shuffle=True, generator=generator))
            logs = train_one_epoch(head, optimizer, schedule, batches, cfg.grad_clip, bar)
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
            log.info("%s epoch %d: %s", label, epoch + 1, {k: round(v, 4) for k, v in logs.items()})
            finished = epoch + 1 == stage.epochs
            if finished:
                head.after_stage(stage.name, (Batch(train, index, cfg.device) for index in
                                              length_batches(train.lengths, cfg.batch_size, shuffle=False)))
            _checkpoint(Path(cfg.out), number, epoch, finished, head, optimizer, schedule, generator)
    for p in head.parameters():
        p.requires_grad_(True)
    bar.close()


def train_head(cfg: TrainConfig) -> dict:
    """Train, evaluate, write the run directory; returns metrics.json's content."""
    started = time.time()
    resume = prepare_run_dir(cfg)
    train, evaluation, classes = load_data(cfg)
    torch.manual_seed(cfg.seed)
    head = build_head(cfg, head_dims(train, classes)).to(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    checkpoint = None
    if resume:
        checkpoint = torch.load(Path(cfg.out) / "checkpoint.pt", weights_only=True, map_location=cfg.device)
        head.load_state_dict(checkpoint["head"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])     # Gumbel noise and sampled actions continue as they would have
        log.warning("resuming %s at stage %d, epoch %d", cfg.out, checkpoint["stage"] + 1, checkpoint["epoch"] + 1)
    write_config(cfg, train.sets, classes, head)
    write_skipped(Path(cfg.out), {cfg.train_split: train.skipped, cfg.eval_split: evaluation.skipped})
    train_stages(head, train, cfg, generator, checkpoint)
    atomic_write(Path(cfg.out) / "head.pt", lambda tmp: torch.save(head.state_dict(), tmp))
    eval_started = time.time()
    result = run_head(head, evaluation, batch_size=max(cfg.batch_size, 256), device=cfg.device,
                      progress=cfg.progress)
    eval_seconds = time.time() - eval_started
    metrics = compute_metrics(result, cfg.method, cfg.eval_split, classes)
    # head seconds per video on cached features (LiteEval Table 10 adds the backbones' time)
    metrics |= {"train_videos": len(train), "skipped_videos": len(evaluation.skipped),
                "head_seconds_per_video": eval_seconds / len(evaluation), "seconds": round(time.time() - started, 1)}
    write_run_files(Path(cfg.out), result, metrics, classes)
    (Path(cfg.out) / "checkpoint.pt").unlink(missing_ok=True)
    return metrics
