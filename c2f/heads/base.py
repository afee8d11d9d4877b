"""The one small interface every phase-two head implements.

A head is built from the cache's dimensions, reads features only through a `Batch`
(which records every read, so FLOPs are charged where features were really used), and
returns a `HeadOutput`. Its own per-step costs are counted from its modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..data import Batch


@dataclass
class HeadDims:
    num_classes: int
    fine_dim: int                               # per frame, or per candidate patch for a grid
    coarse_dim: int | None = None               # channels for a map
    coarse_shape: tuple[int, ...] = ()          # per-frame shape of the coarse set ((C, H, W) for a map)
    candidates: int = 0                         # G*G for a patch grid, else 0
    patch_area_fraction: float = 1.0            # (P / input size)^2: AdaFocus+'s cost term


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


def soft_targets(targets: torch.Tensor) -> torch.Tensor:
    """Multi-hot labels as a distribution (single-label: one-hot)."""
    return targets / targets.sum(-1, keepdim=True).clamp(min=1)


def count_gmacs(fn, *args) -> float:
    """Multiply-accumulates (10^9) of fn(*args), counted by FlopCounterMode (2 FLOPs per MAC)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() / 2 / 1e9


def reinforce_loss(action_log_prob: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """REINFORCE with the batch's mean reward as the baseline (lower variance, no extra network)."""
    advantage = reward - reward.mean()
    return -(advantage.detach() * action_log_prob).mean()


class Head(nn.Module):
    """Base class. Subclasses set `roles` (the feature roles they read) and implement forward."""
    roles: tuple[str, ...] = ("fine",)
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

    def set_progress(self, fraction: float) -> None:
        """Called before each epoch with the fraction of the stage done (for annealed temperatures)."""

    def training_stages(self, epochs: list[int], lrs: list[float]) -> list[Stage]:
        """One stage, every parameter, Adam (heads with several stages override this)."""
        return [Stage("train", epochs[0], lrs[0], "adam", list(self.parameters()))]

    def set_stage(self, name: str) -> None:
        """Called when a stage starts."""

    def after_stage(self, name: str, batches) -> None:
        """Called when a stage ends, with an iterable of training batches (AdaFocus+ solves its threshold)."""

    def train_step(self, batch: Batch, optimizer: torch.optim.Optimizer, grad_clip: float) -> dict[str, float]:
        """One optimisation step on a batch; returns what to log."""
        loss, logs = self.training_loss(self(batch), batch.targets)
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"the loss became {float(loss.detach())}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
        optimizer.step()
        return logs

    def training_loss(self, out: HeadOutput, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on the video's labels (multi-label: their normalised multi-hot) + the head's extras;
        REINFORCE heads add a policy-gradient term whose reward is the probability given to the labels."""
        loss = sum(out.extra_loss.values())
        logs = {k: float(v.detach()) for k, v in out.extra_loss.items()}
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
