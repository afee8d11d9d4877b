"""The head trained on the whole training split with its one schedule (schedule.py), resumed from
RUN/checkpoint.pt when an earlier run of the same settings was interrupted."""
from __future__ import annotations

import copy
import logging

import torch

from ..config import TrainConfig
from ..data import VideoSet
from ..heads import Head, HeadDims, build_head
from ..rundir import RunDir
from .loop import train_stages
from .schedule import make_optimizer, planned_epochs

log = logging.getLogger(__name__)


def fit(cfg: TrainConfig, train: VideoSet, dims: HeadDims, resume: bool) -> tuple[Head, dict]:
    """The trained head and how it was trained (metrics.json's `training`: the schedule, the rate,
    the epochs and how they were set, steps, seconds)."""
    torch.manual_seed(cfg.seed)
    head = build_head(cfg, dims).to(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    checkpoint = RunDir(cfg.out).checkpoint(cfg.device) if resume else None
    if checkpoint is not None and not _resumable(checkpoint, head, cfg, len(train)):
        log.warning("%s/checkpoint.pt does not fit this c2f's head or schedule (another version wrote it): "
                    "training starts over", cfg.out)
        checkpoint = None
        RunDir(cfg.out).restart_log()
    if checkpoint:
        head.load_state_dict(checkpoint["head"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])     # Gumbel noise and sampled actions continue as they would have
        where = checkpoint["progress"]
        log.warning("resuming %s at stage %d, epoch %d", cfg.out, where["stage"] + 1, where["epoch"] + 1)
    training = train_stages(head, train, cfg, generator, checkpoint)
    return head, training | {"head": head.summary()}


def _resumable(checkpoint: dict, head: Head, cfg: TrainConfig, videos: int) -> bool:
    """Whether the checkpoint continues this training: the same plan of epochs, and the head's and its
    stage optimiser's state load (a checkpoint of another c2f version may have other parameters or
    parameter groups: the run starts over rather than stop)."""
    epochs = planned_epochs(cfg, videos)[0]
    if checkpoint.get("plan") != epochs:
        return False
    try:
        probe = copy.deepcopy(head)
        probe.load_state_dict(checkpoint["head"])
        where = checkpoint["progress"]
        stages = probe.training_stages(epochs, cfg.stage_schedule()[1])
        if where["stage"] < len(stages) and where["epoch"]:      # train_stages loads it only inside a stage
            make_optimizer(stages[where["stage"]], cfg, 1)[0].load_state_dict(checkpoint["optimizer"])
    except (KeyError, IndexError, RuntimeError, ValueError):
        return False
    return True
