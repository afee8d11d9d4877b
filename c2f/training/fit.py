"""The head trained on the whole training split with its one schedule (schedule.py), resumed from
RUN/checkpoint.pt when an earlier run of the same settings was interrupted."""
from __future__ import annotations

import logging

import torch

from ..config import TrainConfig
from ..data import VideoSet
from ..heads import Head, HeadDims, build_head
from ..rundir import RunDir
from .loop import train_stages
from .schedule import planned_epochs

log = logging.getLogger(__name__)


def fit(cfg: TrainConfig, train: VideoSet, dims: HeadDims, resume: bool) -> tuple[Head, dict]:
    """The trained head and how it was trained (metrics.json's `training`: the schedule, the rate,
    the epochs and how they were set, steps, seconds)."""
    torch.manual_seed(cfg.seed)
    head = build_head(cfg, dims).to(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    checkpoint = RunDir(cfg.out).checkpoint(cfg.device) if resume else None
    if checkpoint is not None and checkpoint.get("plan") != planned_epochs(cfg, len(train))[0]:
        checkpoint = None        # written by another plan (an older c2f): start over
    if checkpoint:
        head.load_state_dict(checkpoint["head"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])     # Gumbel noise and sampled actions continue as they would have
        where = checkpoint["progress"]
        log.warning("resuming %s at stage %d, epoch %d", cfg.out, where["stage"] + 1, where["epoch"] + 1)
    training = train_stages(head, train, cfg, generator, checkpoint)
    return head, training | {"head": head.summary()}
