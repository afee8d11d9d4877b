"""`c2f train-head`: train one head on the cache's train split, evaluate it, write the run.

One loop for every method: the head's stages (one for most; AdaFocus has three), each with
its parameters and optimizer; batches of videos of similar length; the head's train_step
(forward, its loss, a step; AdaFocus's stage II runs PPO there). After every epoch a
checkpoint is written, so a run killed midway resumes from that (stage, epoch) when the same
command is given again.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.manifest import read_manifest
from pipeline.shards import atomic_write_text

from .config import TrainConfig
from .data import Batch, CacheError, VideoSet, length_batches, load_videos
from .evaluate import compute_metrics, run_head, write_run_files
from .heads import METHOD_ROLES, METHOD_SHAPES, Head, HeadDims, build_head
from .heads.base import Stage

log = logging.getLogger(__name__)
RUN_FILES = ("config.json", "metrics.json", "predictions.csv", "decisions.csv", "head.pt", "checkpoint.pt",
             "skipped.csv", "online.csv")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _summarise_skipped(videos: VideoSet, split: str) -> None:
    if videos.skipped:
        shown = "; ".join(f"{v}: {why}" for v, why in list(videos.skipped.items())[:5])
        more = f" (+{len(videos.skipped) - 5} more)" if len(videos.skipped) > 5 else ""
        log.warning("%d %s videos skipped (all listed in RUN/skipped.csv): %s%s", len(videos.skipped), split,
                    shown, more)


def feature_roles(cfg: TrainConfig) -> dict[str, str]:
    """Role -> feature set, for the roles the method reads."""
    if cfg.method not in METHOD_ROLES:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHOD_ROLES)}")
    names = cfg.feature_sets()
    return {role: names[role] for role in METHOD_ROLES[cfg.method]}


def load_data(cfg: TrainConfig) -> tuple[VideoSet, VideoSet, list[str]]:
    """The train and evaluation splits, with the feature sets the method reads."""
    roles = feature_roles(cfg)
    manifest = read_manifest(cfg.manifest, check_paths=False)
    classes = manifest.classes()
    splits = []
    for split in (cfg.train_split, cfg.eval_split):
        if splits and split == cfg.train_split:     # evaluating on the training split: load it once
            splits.append(splits[0])
            break
        videos = load_videos(manifest, split, cfg.cache, roles, classes)
        _summarise_skipped(videos, split)
        if len(videos) == 0:
            raise CacheError(f"no {split} video of {cfg.manifest} has features in {cfg.cache} "
                             f"({len(videos.skipped)} skipped, {len(manifest.split(split))} in the manifest)")
        check_shapes(cfg, videos)
        splits.append(videos)
    train, evaluation = splits
    unseen = [c for c, n in zip(classes, train.targets.sum(0).tolist()) if n == 0]
    if unseen:
        log.warning("%d classes have no training video (never predicted well): %s", len(unseen),
                    ", ".join(unseen[:10]))
    return train, evaluation, classes


def _kind(info) -> str:
    if info.attrs.get("grid"):
        return "grid"
    return {1: "pooled", 3: "map"}.get(len(info.frame_shape), "other")


def check_shapes(cfg: TrainConfig, videos: VideoSet) -> None:
    """Each role's feature set has the kind the method reads; videos with fewer frames than
    --frames are counted (they repeat frames).

    AdaFocus's glance map may come from a smaller input than its patch grid (the paper glances
    at low resolution): phase one resizes every set from the same centre-cropped square, so
    the map's cells and the grid's candidates cover the same part of the frame whatever the
    sizes, and the timestamps check pairs the same frames."""
    wanted = METHOD_SHAPES.get(cfg.method, {})
    for role, info in videos.sets.items():
        kind, need = _kind(info), wanted.get(role, "pooled")
        if kind != need:
            option = {"pooled": f"--{role}", "map": "--glance", "grid": "--focus"}[need]
            raise CacheError(f"{cfg.method} needs a {need} feature set for {option}; {info.name} is a {kind} "
                             f"set (per-frame shape {info.frame_shape})")
    if cfg.method in METHOD_SHAPES:
        short = int((videos.lengths < cfg.frames).sum())
        if short:
            log.warning("%d videos have fewer cached frames than --frames %d: their segments repeat frames "
                        "(a frame or patch read twice is charged once)", short, cfg.frames)


def head_dims(videos: VideoSet, classes: list[str]) -> HeadDims:
    return dims_from_shapes({role: info.frame_shape for role, info in videos.sets.items()},
                            {role: info.attrs for role, info in videos.sets.items()}, len(classes))


def dims_from_shapes(shapes: dict, attrs: dict, num_classes: int) -> HeadDims:
    fine, coarse = tuple(shapes["fine"]), tuple(shapes.get("coarse", ()))
    grid = bool(attrs["fine"].get("grid"))
    area = (attrs["fine"]["patch_size"] / attrs["fine"]["input_size"]) ** 2 if grid and attrs["fine"].get("input_size") else 1.0
    return HeadDims(num_classes, fine[-1], coarse[0] if coarse else None, coarse, fine[0] if grid else 0, area)


def prepare_run_dir(cfg: TrainConfig) -> bool:
    """Create RUN; refuse an existing one unless --overwrite. True when an unfinished run of the
    same settings can resume from its checkpoint."""
    run = Path(cfg.out)
    if run.exists() and any(run.iterdir()):
        same = False
        if (run / "config.json").exists():
            saved = json.loads((run / "config.json").read_text(encoding="utf-8"))["settings"]
            asked = json.loads(json.dumps(cfg.to_dict()))          # as config.json holds it (tuples as lists)
            same = {k: v for k, v in saved.items() if k not in ("overwrite", "progress")} == \
                   {k: v for k, v in asked.items() if k not in ("overwrite", "progress")}
        if cfg.overwrite:
            for name in RUN_FILES:
                (run / name).unlink(missing_ok=True)
        elif same and (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists():
            return True
        else:
            raise FileExistsError(f"{run} already holds a run; give --overwrite to replace it, or another --out")
    run.mkdir(parents=True, exist_ok=True)
    return False


def write_config(cfg: TrainConfig, train: VideoSet, classes: list[str], head: Head) -> None:
    payload = {"settings": cfg.to_dict(),
               "feature_sets": {role: {"name": info.name, "attrs": info.attrs, "frame_shape": list(info.frame_shape)}
                                for role, info in train.sets.items()},
               "manifest_sha256": sha256_of(cfg.manifest), "classes": classes,
               "head_costs_gmacs": head.costs, "parameters": sum(p.numel() for p in head.parameters())}
    atomic_write_text(Path(cfg.out) / "config.json", json.dumps(payload, indent=1))


def write_skipped(run: Path, splits: dict[str, VideoSet]) -> None:
    """RUN/skipped.csv: every manifest video left out, and why (the log shows only the first few)."""
    rows = [(vid, split, why) for split, videos in splits.items() for vid, why in videos.skipped.items()]
    if rows:
        with open(run / "skipped.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video_id", "split", "reason"])
            writer.writerows(rows)


def make_optimizer(stage: Stage, cfg: TrainConfig, batches_per_epoch: int):
    if stage.optimizer == "sgd":       # AdaFocus's classifier stages: SGD, Nesterov 0.9, cosine annealing
        optimizer = torch.optim.SGD(stage.parameters, lr=stage.lr, momentum=0.9, nesterov=True,
                                    weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, stage.epochs * batches_per_epoch))
        return optimizer, schedule
    return torch.optim.Adam(stage.parameters, lr=stage.lr, weight_decay=cfg.weight_decay), None


def train_stages(head: Head, train: VideoSet, cfg: TrainConfig, generator: torch.Generator,
                 checkpoint: dict | None = None) -> None:
    """Every stage of the head (one for most), each epoch checkpointed: a rerun resumes where it stopped."""
    run = Path(cfg.out)
    stages = head.training_stages(*cfg.stage_schedule())
    batches_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = sum(s.epochs for s in stages) * batches_per_epoch
    start_stage, start_epoch = (checkpoint["stage"], checkpoint["epoch"]) if checkpoint else (0, 0)
    done = (sum(s.epochs for s in stages[:start_stage]) + start_epoch) * batches_per_epoch
    bar = tqdm(total=total, initial=done, unit="batch", desc=f"train {cfg.method}", disable=not cfg.progress)
    for number, stage in enumerate(stages):
        if number < start_stage:
            continue
        head.set_stage(stage.name)
        trained = {id(p) for p in stage.parameters}
        for p in head.parameters():         # frozen outside the stage: no gradients computed for them
            p.requires_grad_(id(p) in trained)
        optimizer, schedule = make_optimizer(stage, cfg, batches_per_epoch)
        first_epoch = 0
        if checkpoint and number == start_stage:
            optimizer.load_state_dict(checkpoint["optimizer"])
            if schedule is not None:
                schedule.load_state_dict(checkpoint["schedule"])
            first_epoch = start_epoch
        label = f"train {cfg.method}" + (f" stage {stage.name}" if len(stages) > 1 else "")
        for epoch in range(first_epoch, stage.epochs):
            head.train()
            head.set_progress(epoch / max(1, stage.epochs - 1))
            bar.set_description(f"{label} epoch {epoch + 1}/{stage.epochs}")
            totals, seen = {}, 0
            for index in length_batches(train.lengths, cfg.batch_size, shuffle=True, generator=generator):
                logs = head.train_step(Batch(train, index, cfg.device), optimizer, cfg.grad_clip)
                if schedule is not None:
                    schedule.step()
                seen += len(index)
                for k, v in logs.items():
                    totals[k] = totals.get(k, 0.0) + v * len(index)
                bar.update()
            bar.set_postfix({k: f"{v / seen:.3f}" for k, v in totals.items()})
            log.info("%s epoch %d: %s", label, epoch + 1, {k: round(v / seen, 4) for k, v in totals.items()})
            if epoch + 1 == stage.epochs:
                head.after_stage(stage.name, (Batch(train, index, cfg.device) for index in
                                              length_batches(train.lengths, cfg.batch_size, shuffle=False)))
            finished = epoch + 1 == stage.epochs
            state = {"stage": number + 1 if finished else number, "epoch": 0 if finished else epoch + 1,
                     "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict() if schedule is not None else {},
                     "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
            torch.save(state, run / "checkpoint.pt.tmp")
            (run / "checkpoint.pt.tmp").replace(run / "checkpoint.pt")
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
    write_config(cfg, train, classes, head)
    write_skipped(Path(cfg.out), {cfg.train_split: train, cfg.eval_split: evaluation})
    train_stages(head, train, cfg, generator, checkpoint)
    torch.save(head.state_dict(), Path(cfg.out) / "head.pt")
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


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[TrainConfig, Head, list[str]]:
    """A trained head from its run directory (weights loaded with weights_only=True)."""
    run = Path(run_dir)
    if not (run / "head.pt").exists() or not (run / "config.json").exists():
        raise FileNotFoundError(f"{run} is not a finished run (needs config.json and head.pt)")
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    cfg = TrainConfig.from_dict(saved["settings"])
    shapes = {role: s["frame_shape"] for role, s in saved["feature_sets"].items()}
    attrs = {role: s["attrs"] for role, s in saved["feature_sets"].items()}
    head = build_head(cfg, dims_from_shapes(shapes, attrs, len(saved["classes"])))
    head.load_state_dict(torch.load(run / "head.pt", weights_only=True, map_location=device))
    return cfg, head.to(device), saved["classes"]

