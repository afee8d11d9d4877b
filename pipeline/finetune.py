"""`c2f finetune-backbone`: train a backbone on frames of the manifest's videos, for phase one.

Where no pretrained weights fit the data (the embedded demo; a new domain), the frozen
backbones of phase one can first be fine-tuned as frame classifiers: every sampled frame of
a training video takes the video's labels (frames without the evidence make noisy labels,
as they do in practice). The frames are decoded and prepared exactly as `c2f extract`
prepares them (pipeline.decode, FeatureSet.prepare), so the weights see at extraction what
they saw in training.

The output is a state dict of the full network without its classification head; pass it to
`c2f extract --weights SET=PATH`. Beside it, PATH.json records the settings, the classes and
the per-epoch loss and accuracy. One checkpoint per epoch (PATH.partial) lets a killed run
resume where it stopped.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import backbones as bb
from .decode import Sampling, decode_samples
from .core.devices import DEVICE_HELP, resolve_device
from .core.errors import SettingsError
from .core.files import atomic_write, atomic_write_text
from .core.manifest import read_manifest
from .core.options import option, validate

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    manifest: str = option(help="Manifest CSV.")
    backbone: str = option(help="The plain backbone, e.g. resnet18@224 (its weights also serve its -map and -grid sets).")
    out: str = option(help="Weights file to write (.pt).")
    num_frames: int = option(8, "Frames per video (segment centres).", minimum=1)
    epochs: int = option(3, minimum=1)
    lr: float = option(1e-3, "AdamW, cosine schedule.", above=0)
    weight_decay: float = option(1e-4, minimum=0)
    batch_size: int = option(32, minimum=1)
    init: str = option("random", "Start from: imagenet | random | PATH.")
    pooling: str = option("frame", "frame: every frame learns its video's labels; max: the class-wise maximum over "
                                   "a video's frames does (multiple-instance learning, for labels shown on a few "
                                   "frames only).", choices=("frame", "max"))
    split: str = option("train", "The split to train on.")
    eval_split: str = option("val", "Frame and video accuracy on this split at the end; 'none' to skip.")
    preprocess: str = option("eval", "Frames prepared as `c2f extract --preprocess` will prepare them.",
                             choices=bb.PREPROCESS)
    seed: int = option(0)
    device: str = option("auto", DEVICE_HELP)
    progress: bool = option(True, "Show progress bars.")

    def __post_init__(self):
        validate(self)
        resolve_device(self.device)        # a device that is not there: one line, before anything is written


@dataclass
class Frames:
    images: torch.Tensor        # [N, S, S, 3] uint8, every sampled frame
    spans: list[range]          # the rows of each video
    targets: torch.Tensor       # [V, C] soft targets: the video's labels, equally weighted
    failed: int                 # videos that could not be decoded (skipped)

    def units(self, pooling: str) -> tuple[list[range], torch.Tensor]:
        """What one loss term sees: a frame with its video's target, or a whole video."""
        if pooling == "max":
            return self.spans, self.targets
        return ([range(i, i + 1) for span in self.spans for i in span],
                torch.cat([self.targets[v].expand(len(span), -1) for v, span in enumerate(self.spans)]))


def _decode_frames(entries, fs: bb.FeatureSet, num_frames: int, class_index: dict, progress: bool,
                   desc: str, preprocess: str) -> Frames:
    """Every sampled frame of the videos, as phase one would decode them; bad videos are skipped."""
    images, spans, targets, failed = [], [], [], 0
    for entry in tqdm(entries, desc=desc, unit="video", disable=not progress, dynamic_ncols=True):
        try:
            frames = [s.image for s in decode_samples(entry.path, Sampling(num_frames=num_frames),
                                                      fs.resize_size(preprocess))]
        except Exception as err:  # noqa: BLE001 - one bad file must never stop the run
            log.warning("%s: skipped, %s", entry.video_id, str(err).splitlines()[0] if str(err) else type(err).__name__)
            failed += 1
            continue
        target = np.zeros(len(class_index), np.float32)
        target[[class_index[label] for label in entry.labels]] = 1 / len(entry.labels)
        spans.append(range(len(images), len(images) + len(frames)))
        images += frames
        targets.append(target)
    if not images:
        raise SettingsError(f"no frames could be decoded from the {desc} videos")
    return Frames(torch.from_numpy(np.stack(images)), spans, torch.from_numpy(np.stack(targets)), failed)


def pooled_logits(model: "FrameClassifier", images: torch.Tensor, units: list[range]) -> torch.Tensor:
    """[len(units), C]: per unit, the class-wise maximum over its frames (one frame: its logits).
    Max pooling is multiple-instance learning: a video's label must show on one of its frames,
    so the frames without the evidence are not pushed towards a label they do not show."""
    rows = torch.tensor([i for unit in units for i in unit])
    logits = model(model.prepare(images[rows]))
    pooled, start = [], 0
    for unit in units:
        pooled.append(logits[start:start + len(unit)].max(0).values)
        start += len(unit)
    return torch.stack(pooled)


class FrameClassifier(nn.Module):
    """The backbone's trunk, pooled, and a new linear head over the manifest's classes."""

    def __init__(self, fs: bb.FeatureSet, init: str, num_classes: int, preprocess: str = "eval"):
        super().__init__()
        self.fs, self.preprocess = fs, preprocess
        self.full = bb.build_full(fs.backbone, init)
        self.features = bb.FeatureNet(fs.backbone.trunk_of(self.full), pooled=True)   # shares full's modules
        self.head = nn.Linear(fs.backbone.feature_dim, num_classes)

    def prepare(self, squares: torch.Tensor) -> torch.Tensor:
        """Decoded squares -> the inputs on the model's device, exactly as phase one prepares them
        (channels_last, as the network: 1.4-2.2x the frames/s of the contiguous format on a CPU,
        docs/measurements/phase-one.md)."""
        squares = squares.to(self.head.weight.device, non_blocking=True)
        return self.fs.prepare(squares, self.preprocess).contiguous(memory_format=torch.channels_last)

    def forward(self, x):
        return self.head(self.features(x))

    def backbone_state(self, classifier_prefixes: tuple[str, ...]) -> dict:
        """The full network's weights, trained trunk included, without its (untrained) ImageNet head."""
        return {k: v for k, v in self.full.state_dict().items() if not k.startswith(classifier_prefixes)}


@torch.no_grad()
def held_out_accuracy(model: FrameClassifier, frames: Frames, batch_size: int) -> dict:
    """Frame accuracy (a frame's arg-max is one of its video's labels) and video accuracy (the
    class-wise maximum over the video's frames, as max pooling trains it)."""
    model.eval()
    logits = torch.cat([model(model.prepare(frames.images[start:start + batch_size])).cpu()
                        for start in range(0, len(frames.images), batch_size)])
    frame_hits = video_hits = 0
    for target, span in zip(frames.targets, frames.spans):
        own = logits[span.start:span.stop]
        frame_hits += int((target[own.argmax(1)] > 0).sum())
        video_hits += int(target[own.max(0).values.argmax()] > 0)
    return {"frame_accuracy": frame_hits / len(frames.images), "video_accuracy": video_hits / len(frames.spans)}


def _resumable(cfg: FinetuneConfig) -> dict:
    """The settings a partial checkpoint must share to be resumed (all but the progress bar and device)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("progress", "device")}


def _feature_set(cfg: FinetuneConfig) -> bb.FeatureSet:
    fs = bb.parse_spec(cfg.backbone)
    if fs.output == "clip":
        raise SettingsError(f"{fs.name} is a video model; finetune-backbone trains image backbones")
    if fs.output != "pooled":
        raise SettingsError(f"fine-tune the plain backbone ({fs.backbone.name}@{fs.input_size}); its weights serve "
                         f"its -map and -grid sets too")
    bb.check_weights(cfg.init)
    return fs


class _Training:
    """The model, AdamW with a cosine schedule over all steps, and the history: resumed from
    OUT.partial when it holds the same settings, checkpointed there after every epoch."""

    def __init__(self, cfg: FinetuneConfig, fs: bb.FeatureSet, num_classes: int, total_steps: int):
        self.cfg, self.partial = cfg, Path(cfg.out + ".partial")
        torch.manual_seed(cfg.seed)
        self.model = FrameClassifier(fs, cfg.init, num_classes, cfg.preprocess).to(
            resolve_device(cfg.device), memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps)))
        self.history, self.first_epoch = [], 0
        if self.partial.exists():
            state = torch.load(self.partial, map_location="cpu", weights_only=True)
            if state["config"] == _resumable(cfg):
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.schedule.load_state_dict(state["schedule"])
                torch.set_rng_state(state["rng"])
                self.history, self.first_epoch = json.loads(state["history"]), state["epoch"]
                log.info("resuming %s after epoch %d", cfg.out, self.first_epoch)
            else:
                log.warning("%s was written with other settings: starting over", self.partial)

    def checkpoint(self, epoch: int) -> None:
        state = {"config": _resumable(self.cfg), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                 "rng": torch.get_rng_state(), "epoch": epoch, "history": json.dumps(self.history)}
        atomic_write(self.partial, lambda tmp: torch.save(state, tmp))


def _train_epoch(training: _Training, frames: "Frames", units, targets, per_batch: int, label: str) -> dict:
    model, optimizer = training.model, training.optimizer
    model.train()
    order = torch.randperm(len(units)).tolist()
    loss_sum, hits = 0.0, 0
    bar = tqdm(range(0, len(units), per_batch), desc=label, unit="batch", disable=not training.cfg.progress,
               dynamic_ncols=True)
    for start in bar:
        picked = order[start:start + per_batch]
        logits = pooled_logits(model, frames.images, [units[i] for i in picked])
        target = targets[picked].to(logits.device)
        loss = F.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        training.schedule.step()
        loss_sum += loss.item() * len(picked)
        hits += int((target.gather(1, logits.argmax(1)[:, None]) > 0).sum())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return {"loss": loss_sum / len(units), "train_accuracy": hits / len(units)}


def finetune(cfg: FinetuneConfig) -> dict:
    """Train, write cfg.out and cfg.out + '.json'; returns the record written to the json."""
    fs = _feature_set(cfg)
    manifest = read_manifest(cfg.manifest)
    classes = manifest.classes()
    class_index = {name: i for i, name in enumerate(classes)}
    train_entries = manifest.split(cfg.split)
    if not train_entries:
        raise SettingsError(f"the manifest has no {cfg.split!r} videos")
    started = time.perf_counter()
    train = _decode_frames(train_entries, fs, cfg.num_frames, class_index, cfg.progress, cfg.split, cfg.preprocess)
    units, targets = train.units(cfg.pooling)
    per_batch = max(1, cfg.batch_size // (cfg.num_frames if cfg.pooling == "max" else 1))   # ~batch_size frames
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    training = _Training(cfg, fs, len(classes), cfg.epochs * math.ceil(len(units) / per_batch))
    for epoch in range(training.first_epoch, cfg.epochs):
        logs = _train_epoch(training, train, units, targets, per_batch, f"epoch {epoch + 1}/{cfg.epochs}")
        training.history.append({"epoch": epoch + 1, **logs})
        log.info("epoch %d: loss %.4f, accuracy %.3f (%s)", epoch + 1, logs["loss"], logs["train_accuracy"],
                 "videos" if cfg.pooling == "max" else "frames")
        training.checkpoint(epoch + 1)
    record = {"config": asdict(cfg), "feature_set": fs.name, "classes": classes, "train_frames": len(train.images),
              "train_videos_skipped": train.failed, "history": training.history}
    eval_entries = manifest.split(cfg.eval_split) if cfg.eval_split != "none" else []
    if eval_entries:
        held_out = _decode_frames(eval_entries, fs, cfg.num_frames, class_index, cfg.progress, cfg.eval_split,
                                  cfg.preprocess)
        for key, value in held_out_accuracy(training.model, held_out, cfg.batch_size).items():
            record[f"{cfg.eval_split}_{key}"] = value
    record["seconds"] = time.perf_counter() - started
    weights = {k: v.cpu() for k, v in training.model.backbone_state(fs.backbone.classifier_prefixes).items()}
    atomic_write(cfg.out, lambda tmp: torch.save(weights, tmp))
    atomic_write_text(cfg.out + ".json", json.dumps(record, indent=1))
    training.partial.unlink(missing_ok=True)
    return record
