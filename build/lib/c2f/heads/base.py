"""The one small interface every phase-two head implements.

A head is built from the cache's dimensions, reads features only through a `Batch`
(which records every read, so FLOPs are charged where features were really used), and
returns a `HeadOutput`. Its own per-step costs are counted from its modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.flops import count_gmacs
from pipeline.core.options import option

from ..data import Batch
from ..methods import Settings


@dataclass
class EvenFrames(Settings):
    """Settings of the heads that read a fixed number of evenly spaced frames."""
    frames: int = option(25, "evenly spaced frames read per video", minimum=1, variant=True)


@dataclass
class HeadDims:
    num_classes: int
    fine_dim: int                               # per frame, or per candidate patch for a grid
    coarse_dim: int | None = None               # channels for a map
    coarse_shape: tuple[int, ...] = ()          # per-frame shape of the coarse set ((C, H, W) for a map)
    candidates: int = 0                         # G*G for a patch grid, else 0
    patch_area_fraction: float = 1.0            # (P / input size)^2: AdaFocus+'s cost term

    @classmethod
    def of(cls, shapes: dict[str, tuple], attrs: dict[str, dict], num_classes: int) -> "HeadDims":
        """From each role's per-frame shape and shard attributes (the cache's, or a run's config.json)."""
        fine, coarse = tuple(shapes["fine"]), tuple(shapes.get("coarse", ()))
        grid = bool(attrs["fine"].get("grid"))
        fine_attrs = attrs["fine"]
        area = (fine_attrs["patch_size"] / fine_attrs["input_size"]) ** 2 if grid and fine_attrs.get("input_size") else 1.0
        return cls(num_classes, fine[-1], coarse[0] if coarse else None, coarse, fine[0] if grid else 0, area)


@dataclass
class Stage:
    """One training stage: which parameters, how long, how fast (AdaFocus has three)."""
    name: str
    epochs: int
    lr: float
    optimizer: str               # "adam", or "sgd" (Nesterov momentum 0.9, cosine annealing)
    parameters: list


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


def reinforce_loss(action_log_prob: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """REINFORCE with the batch's mean reward as the baseline (lower variance, no extra network)."""
    advantage = reward - reward.mean()
    return -(advantage.detach() * action_log_prob).mean()


class Head(nn.Module):
    """Base class. Subclasses implement forward and cost_probes; the feature roles a method reads
    are in its registered record (c2f.methods)."""
    video_loss = True       # cross-entropy on the video-level logits (UNIFORM trains per frame instead)

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

    def summary(self) -> dict:
        """What the head chose in training that metrics.json should show (thresholds, rates)."""
        return {}

    def set_progress(self, fraction: float) -> None:
        """Called before each epoch with the fraction of the stage done (for annealed temperatures)."""

    def training_stages(self, epochs: list[int], lrs: list[float]) -> list[Stage]:
        """One stage, every parameter, Adam (heads with several stages override this)."""
        return [Stage("train", epochs[0], lrs[0], "adam", list(self.parameters()))]

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
