"""The one small interface every phase-two head implements.

A head is built from the cache's dimensions, reads features only through a `Batch`
(which records every read, so FLOPs are charged where features were really used), and
returns a `HeadOutput`. Its own per-step costs are counted from its modules. The trainer
(c2f.training) owns the loop and the optimisers; a head gives its losses and its stages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.flops import count_gmacs
from pipeline.core.options import option

from ..data import Batch
from ..methods import Settings, role_of
from .reinforce import reinforce_loss


@dataclass
class EvenFrames(Settings):
    """Settings of the heads that read a fixed number of evenly spaced frames."""
    frames: int = option(25, "evenly spaced frames read per video", minimum=1, variant=True)


@dataclass
class HeadDims:
    num_classes: int
    fine_dim: int                               # per frame, or per candidate patch for a grid (the first fine set's)
    coarse_dim: int | None = None               # channels for a map
    coarse_shape: tuple[int, ...] = ()          # per-frame shape of the coarse set ((C, H, W) for a map)
    candidates: int = 0                         # G*G for a patch grid, else 0
    patch_area_fraction: float = 1.0            # (P / input size)^2: AdaFocus+'s cost term
    shapes: dict[str, tuple] = field(default_factory=dict)    # data role -> per-frame shape (fine.0, fine.1 ...)
    gflops: dict[str, float] = field(default_factory=dict)    # data role -> counted GMACs per frame (per patch)

    @classmethod
    def of(cls, shapes: dict[str, tuple], attrs: dict[str, dict], num_classes: int) -> "HeadDims":
        """From each data role's per-frame shape and shard attributes (the cache's, or a run's config.json)."""
        shapes = {role: tuple(shape) for role, shape in shapes.items()}
        first_fine = next(role for role in shapes if role_of(role) == "fine")
        fine, coarse, fine_attrs = shapes[first_fine], shapes.get("coarse", ()), attrs[first_fine]
        grid = bool(fine_attrs.get("grid"))
        area = (fine_attrs["patch_size"] / fine_attrs["input_size"]) ** 2 if grid and fine_attrs.get("input_size") else 1.0
        gflops = {role: float(a.get("gflops_per_frame", 0.0)) for role, a in attrs.items()}
        return cls(num_classes, fine[-1], coarse[0] if coarse else None, coarse, fine[0] if grid else 0, area,
                   shapes, gflops)

    def fine_roles(self) -> list[str]:
        """The data roles of the fine set(s): ['fine'], or ['fine.0', 'fine.1', ...]."""
        return [role for role in self.shapes if role_of(role) == "fine"] or ["fine"]


@dataclass
class Stage:
    """One training stage: which parameters, how long, how fast (AdaFocus has three)."""
    name: str
    epochs: int
    lr: float
    optimizer: str               # "adamw" (one cycle), "adam" (constant), "sgd" (Nesterov, cosine): training.schedule
    parameters: list


@dataclass
class Knob:
    """A setting that trades accuracy for compute after training, without training again: a value the
    head keeps in a buffer (a threshold, or a count such as SCSampler's K), and how to solve it on the
    training videos for each target (a share of frames reading the fine feature, of frames kept, of
    the GFLOPs; or the count itself). c2f.training.operating sweeps the targets into the run's
    curve.csv; `c2f predict --gflops-budget` picks a point of it."""
    name: str
    buffer: str
    targets: tuple[float, ...]
    target: str                                      # what a target means
    solve: Callable[[list, tuple], list]             # (training batches, targets) -> a value per target


@dataclass
class HeadOutput:
    logits: torch.Tensor                        # [B, C] video-level scores before softmax
    head_gmacs: torch.Tensor                    # [B] the head's own cost for each video (counted per step)
    extra_loss: dict[str, torch.Tensor] = field(default_factory=dict)   # weighted, added to the training loss
    action_log_prob: torch.Tensor | None = None  # [B] sum of log-probs of sampled actions (REINFORCE heads)
    reward_penalty: torch.Tensor | None = None   # [B] subtracted from the reward (a cost the agent pays)
    logs: dict = field(default_factory=dict)    # what else the head reports (floats in training)


def soft_targets(targets: torch.Tensor) -> torch.Tensor:
    """Multi-hot labels as a distribution (single-label: one-hot)."""
    return targets / targets.sum(-1, keepdim=True).clamp(min=1)


class Head(nn.Module):
    """Base class: a head implements `forward` and `cost_probes`; the rest has defaults (one training
    stage of every parameter, cross-entropy on the video's logits, no knob). The feature roles a method
    reads are in its registered record (c2f.methods). Heads that step through frames and may stop a
    video early mix in c2f.blocks.exits.EarlyExit."""
    video_loss = True       # cross-entropy on the video-level logits (UNIFORM trains per frame instead)
    can_exit = False        # sample-wise early exit (c2f.blocks.exits.EarlyExit)

    def __init__(self, dims: HeadDims):
        super().__init__()
        self.dims = dims
        self._costs: dict[str, float] | None = None

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        """Training mode may compute densely; eval mode must read a feature only where it is used.
        With `fine_budget` K (eval only), a video stops after its K-th fine read (online setting)."""
        raise NotImplementedError

    def cost_probes(self) -> dict[str, tuple]:
        """name -> (callable, example args): one step of each part of the head, at batch 1."""
        raise NotImplementedError

    @property
    def costs(self) -> dict[str, float]:
        """Counted GMACs of each part of the head, per step (computed once)."""
        if self._costs is None:
            was_training = self.training
            self.eval()
            device = next(self.parameters()).device
            self._costs = {name: count_gmacs(fn, *(a.to(device) for a in args))
                           for name, (fn, args) in self.cost_probes().items()}
            self.train(was_training)
        return self._costs

    def knobs(self) -> list[Knob]:
        """The head's settings that trade accuracy for compute (the first is the main one)."""
        return []

    def summary(self) -> dict:
        """What the head chose in training that metrics.json should show (thresholds, rates)."""
        return {}

    # ------------------------------------------------------------------ training: the trainer calls these

    def training_stages(self, epochs: list[int], lrs: list[float]) -> list[Stage]:
        """One stage, every parameter, AdamW (heads with several stages override this)."""
        return [Stage("train", epochs[0], lrs[0], "adamw", list(self.parameters()))]

    def set_progress(self, fraction: float) -> None:
        """Called before each epoch with the fraction of the stage done (for annealed temperatures)."""

    def set_stage(self, name: str) -> None:
        """Called when a stage starts."""

    def after_stage(self, name: str, batches) -> None:
        """Called when a stage ends, with an iterable of training batches (AdaFocus+ solves its threshold)."""

    def losses(self, batch: Batch) -> Iterator[tuple[torch.Tensor, dict[str, float]]]:
        """The losses of one training batch, each with what to log. The trainer takes an optimiser
        step after each (PPO yields one per update on the same rollout); most heads yield one."""
        yield self.training_loss(self(batch), batch.targets)

    def training_loss(self, out: HeadOutput, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on the video's labels (multi-label: their normalised multi-hot) + the head's extras;
        REINFORCE heads add a policy-gradient term whose reward is the probability given to the labels."""
        loss = sum(out.extra_loss.values())
        logs = {k: float(v.detach()) for k, v in out.extra_loss.items()} | out.logs
        if self.video_loss:
            classification = F.cross_entropy(out.logits, soft_targets(targets))
            loss = loss + classification
            logs["ce"] = float(classification.detach())
        if out.action_log_prob is not None:
            reward = (out.logits.softmax(1) * (targets > 0)).sum(1).detach()
            if out.reward_penalty is not None:
                reward = reward - out.reward_penalty.detach()
            policy = reinforce_loss(out.action_log_prob, reward)
            loss = loss + policy
            logs |= {"reward": float(reward.mean()), "policy": float(policy.detach())}
        return loss, logs
