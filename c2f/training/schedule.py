"""How long and how fast a head trains: one schedule, set before training, no search.

Single-stage heads: AdamW whose rate follows one cycle (torch.optim.lr_scheduler.OneCycleLR): it
warms up from --lr / WARMUP_DIVIDER over the first WARMUP_SHARE of the steps, then anneals to nearly
zero along a cosine; a weight reading more than RATE_WIDTH inputs peaks lower, by the square root of
the ratio (width_groups), so that one --lr suits 64-d synthetic features and 1280-d real ones
(unless the method's record says otherwise: FrameGlimpse gives every weight --lr). The
length is --epochs, or by default as many epochs as --steps optimisation steps take at --batch-size,
and at least MIN_EPOCHS: a few hundred videos (a few batches an epoch) get the many passes they
need, large datasets at least MIN_EPOCHS. The weight decay is each method's
own setting (decoupled: every step shrinks the weights by the rate times it): strong for the
per-frame classifiers (UNIFORM), which otherwise memorise the frames that do not show their label,
moderate for the recurrent heads, whose memory needs large weights.

Why no held-out part: a tenth of a small split (12 videos of 120) cannot tell rates or epochs apart,
the refit on every video then trained a length chosen by noise, and a search over three rates and a
refit cost four trainings. Annealing the rate to nearly zero makes the result depend little on where
it peaked, and every training video trains the head; bench/train_defaults.py measures the defaults
against a grid of rates and lengths (docs/measurements/training-defaults.md).

AdaFocus's stages (--stage-epochs, --stage-lrs): SGD with Nesterov momentum and cosine annealing for
the classifier (stages I and III), Adam at a constant rate for the policies (stage II), as the paper
and its authors' code; their --weight-decay is an L2 penalty.
"""
from __future__ import annotations

import math

import torch

from ..config import MIN_EPOCHS, RATE_WIDTH, WARMUP_SHARE, TrainConfig
from ..blocks.head import Stage

WARMUP_DIVIDER = 25.0    # the first step's rate: --lr / 25 (OneCycleLR's default)
FINAL_DIVIDER = 1e4      # the last step's rate: the start's / 1e4


def planned_epochs(cfg: TrainConfig, videos: int) -> tuple[list[int], str]:
    """(epochs per stage, how they were set) for a training split of `videos` videos."""
    if cfg.record.staged:
        epochs = cfg.stage_schedule()[0]
        return epochs, "--stage-epochs " + ",".join(map(str, epochs))
    if cfg.epochs is not None:
        return [cfg.epochs], f"--epochs {cfg.epochs}"
    batches = math.ceil(videos / cfg.batch_size)
    by_steps = math.ceil(cfg.steps / batches)
    if by_steps < MIN_EPOCHS:
        return [MIN_EPOCHS], f"{MIN_EPOCHS} epochs: the fewest (--steps {cfg.steps} at {batches} batches an epoch)"
    return [by_steps], f"{by_steps} epochs: --steps {cfg.steps} at {batches} batches an epoch"


def width_groups(parameters: list, lr: float, width: float) -> list[dict]:
    """AdamW's parameter groups by peak rate: `lr` for a weight of at most `width` inputs (and every
    bias), lr x sqrt(width / inputs) for a wider one, the group at `lr` first (log.csv's rate).
    Adam moves every weight by about the rate a step whatever its size, so a layer's output moves with
    the number of inputs it sums: 2048-d features at the rate that suits 64-d ones jump about."""
    rates: dict[float, list] = {}
    for p in parameters:
        inputs = math.prod(p.shape[1:]) if p.ndim > 1 else 1
        rates.setdefault(lr * min(1.0, math.sqrt(width / inputs)), []).append(p)
    return [{"params": rates[rate], "lr": rate} for rate in sorted(rates, reverse=True)]


def stage_optimizer(stage: Stage, cfg: TrainConfig) -> str:
    """The optimiser a stage trains with: its own, but a single-stage head's AdamW is the paper's under
    --optimizer adam (Adam with rate steps), sgd (SGD at a constant rate) or sgd-nesterov (Nesterov SGD with
    rate steps): the papers' presets."""
    if stage.optimizer != "adamw" or cfg.optimizer == "adamw":
        return stage.optimizer
    return {"adam": "adam-steps", "sgd": "sgd-constant", "sgd-nesterov": "sgd-nesterov-steps"}[cfg.optimizer]


def width_scaled(stage: Stage, cfg: TrainConfig) -> bool:
    """Whether a wide layer of the stage peaks below its rate: only under c2f's AdamW, where the method's
    record says so (never under a paper's optimiser: --optimizer adam, AdaFocus's stages)."""
    return stage_optimizer(stage, cfg) == "adamw" and cfg.record.width_scaled_rate


def make_optimizer(stage: Stage, cfg: TrainConfig, batches_per_epoch: int):
    """(optimiser, its rate schedule stepped after every batch, or None: constant)."""
    steps = max(1, stage.epochs * batches_per_epoch)
    decay = cfg.setting("weight_decay", 0.0)        # each method's own (its settings)
    kind = stage_optimizer(stage, cfg)
    if kind in ("adam-steps", "sgd-nesterov-steps"):    # LiteEval's, Listen to Look's released code: L2 decay,
        optimizer = (torch.optim.Adam(stage.parameters, lr=stage.lr, weight_decay=decay) if kind == "adam-steps"
                     else torch.optim.SGD(stage.parameters, lr=stage.lr, momentum=0.9, nesterov=True,
                                          weight_decay=decay))      # the rate / 10 at --rate-steps
        milestones = sorted({max(1, round(share * steps)) for share in cfg.rate_steps})
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    if kind == "sgd-constant":     # AR-Net's released main_base.py: its rate steps lie past its 50 epochs
        return torch.optim.SGD(stage.parameters, lr=stage.lr, momentum=0.9, weight_decay=decay), None
    if kind == "sgd":
        optimizer = torch.optim.SGD(stage.parameters, lr=stage.lr, momentum=0.9, nesterov=True, weight_decay=decay)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    if stage.optimizer == "adam":
        return torch.optim.Adam(stage.parameters, lr=stage.lr, weight_decay=decay), None
    width = RATE_WIDTH if width_scaled(stage, cfg) else math.inf     # the method's record decides
    groups = width_groups(stage.parameters, stage.lr, width)
    optimizer = torch.optim.AdamW(groups, lr=stage.lr, weight_decay=decay)
    # OneCycleLR's last rate is its step total_steps - 1; the trainer steps the schedule after every batch, the
    # last one included: one more step than batches. The warm-up is a whole number of steps (at least one),
    # OneCycleLR dividing by zero where a fraction of a few steps rounds to nothing.
    warmup = max(1, round(WARMUP_SHARE * steps))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in groups], total_steps=steps + 1,
        pct_start=(warmup + 1) / (steps + 1), anneal_strategy="cos", cycle_momentum=False,
        div_factor=WARMUP_DIVIDER, final_div_factor=FINAL_DIVIDER)
    return optimizer, schedule
