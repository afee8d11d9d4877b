"""How long and how fast: a fixed schedule, or (by default) the learning rate and the number of
epochs chosen on a held-out part of the training split, then the head trained again on all of it."""
from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..config import DEFAULT_LR, LR_CANDIDATES, TrainConfig
from ..data import VideoSet
from ..heads import Head, HeadDims, build_head
from ..rundir import RunDir
from .loop import train_stages
from .stopping import plan

log = logging.getLogger(__name__)


def automatic_length(cfg: TrainConfig, train: VideoSet) -> bool:
    """Early stopping on a held-out part (_plan holds one out: a single-stage head, no --epochs,
    enough videos)."""
    return len(plan(cfg, train)[1]) > 0


def _fit_at(cfg: TrainConfig, train: VideoSet, dims: HeadDims, resume: bool, phase: str = "") -> tuple[Head, dict]:
    """The head trained at cfg.lr for cfg.epochs (None: until the held-out part stops improving),
    resumed from RUN/checkpoint.pt when it was interrupted with that plan."""
    torch.manual_seed(cfg.seed)
    head = build_head(cfg, dims).to(cfg.device)
    generator = torch.Generator().manual_seed(cfg.seed)
    checkpoint = RunDir(cfg.out).checkpoint(cfg.device) if resume else None
    if checkpoint is not None and checkpoint.get("plan") != [cfg.lr, cfg.epochs]:
        checkpoint = None
    if checkpoint:
        head.load_state_dict(checkpoint["head"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])     # Gumbel noise and sampled actions continue as they would have
        where = checkpoint["progress"]
        log.warning("resuming %s at stage %d, epoch %d", cfg.out, where["stage"] + 1, where["epoch"] + 1)
    training = train_stages(head, train, cfg, generator, checkpoint, phase)
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
    run = RunDir(cfg.out)
    tried = run.search() if resume else {}
    for lr in rates:
        if str(lr) not in tried:
            tried[str(lr)] = _fit_at(replace(cfg, lr=lr), train, dims, resume, phase=f"lr {lr}")[1]
            run.save_search(tried)
    scores = {lr: (tried[str(lr)]["held_out_errors"], tried[str(lr)]["held_out_loss"]) for lr in rates}
    best = min(rates, key=scores.get)
    epochs = tried[str(best)]["best_epoch"]
    head, refit = _fit_at(replace(cfg, lr=best, epochs=epochs), train, dims, resume, phase="refit")
    info = tried[str(best)] | {"head": refit["head"], "steps": tried[str(best)]["steps"] + refit["steps"],
                               "refit": f"{epochs} epochs at lr {best} on all {len(train)} training videos"}
    if len(rates) > 1:
        info["lr_search"] = {str(lr): {"held_out_errors": round(errors, 4), "held_out_loss": round(loss, 5)}
                             for lr, (errors, loss) in scores.items()}
    return head, info

