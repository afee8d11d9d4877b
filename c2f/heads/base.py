"""The one small interface every phase-two head implements.

A head is built from the cache's dimensions, reads features only through a `Batch`
(which records every read, so FLOPs are charged where features were really used), and
returns a `HeadOutput`. Its own per-step costs are counted from its modules.
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
from ..methods import Settings
from .exits import ExitTrace, lowest_threshold_reaching


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
    optimizer: str               # "adamw" (one cycle), "adam" (constant), "sgd" (Nesterov, cosine): training.schedule
    parameters: list


@dataclass
class Knob:
    """A setting that trades accuracy for compute after training, without training again: a threshold
    the head keeps in a buffer, and how to solve it on the training videos for a target (a share of
    frames reading the fine feature, of frames kept, of the GFLOPs). c2f.training.operating sweeps
    the targets into the run's curve.csv; `c2f predict --gflops-budget` picks a point of it."""
    name: str
    buffer: str
    targets: tuple[float, ...]
    target: str                                      # what a target means
    solve: Callable[[list, tuple], list]             # (training batches, targets) -> a threshold per target


EXIT_SHARES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


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
    are in its registered record (c2f.methods).

    Sample-wise early exit (the heads that step through a video's frames): at evaluation, after each
    step, a video whose running prediction gives a class at least `exit_threshold` stops there; its
    later frames are never read (nor, in prediction, decoded). Off (infinity) unless a threshold is
    set (c2f.training.operating calibrates one on the training split to a GFLOPs budget)."""
    video_loss = True       # cross-entropy on the video-level logits (UNIFORM trains per frame instead)
    can_exit = False        # the head implements early exit

    def __init__(self, dims: HeadDims):
        super().__init__()
        self.dims = dims
        self._costs: dict[str, float] | None = None
        self.register_buffer("exit_threshold", torch.tensor(float("inf")))
        self._exit_trace: ExitTrace | None = None

    @property
    def exits(self) -> bool:
        """Whether this evaluation steps with early exit (or traces it: exit_threshold_for)."""
        return not self.training and self.can_exit and (
            self._exit_trace is not None or bool(torch.isfinite(self.exit_threshold)))

    def stops(self, batch: Batch, rows: torch.Tensor, logits: torch.Tensor, head_gmacs: torch.Tensor) -> torch.Tensor:
        """After a step of the videos `rows` of the batch: [k] True where the running prediction (logits or
        log-probabilities) is sure enough to stop. `head_gmacs`: the head's own cost of them so far. While
        a trace is taken, nothing stops and each step is noted."""
        confidence = logits.softmax(-1).max(-1).values
        if self._exit_trace is not None:
            self._exit_trace.note(rows, confidence, batch.read_gflops()[rows.cpu()] + head_gmacs.double().cpu())
            return torch.zeros_like(confidence, dtype=torch.bool)
        return confidence >= self.exit_threshold

    def knobs(self) -> list[Knob]:
        """The head's settings that trade accuracy for compute (early exit where it can; heads add theirs
        before it: the first is the main one)."""
        if not self.can_exit:
            return []
        return [Knob("exit", "exit_threshold", EXIT_SHARES, "share of the GFLOPs without early exit",
                     self.exit_thresholds_for)]

    @torch.no_grad()
    def mean_gflops(self, batches) -> float:
        """Mean GFLOPs a video (features read and the head's own steps) over the batches, as evaluated."""
        was_training, total, videos = self.training, 0.0, 0
        self.eval()
        for batch in batches:
            batch.clear_reads()
            total += float((self(batch).head_gmacs.double().cpu() + batch.read_gflops()).sum())
            videos += len(batch)
        self.train(was_training)
        return total / max(1, videos)

    @torch.no_grad()
    def exit_trace(self, batches) -> tuple:
        """One pass over the batches that never stops, noting after every step of every video its
        confidence and its cost so far ([V, S] arrays each; c2f.heads.exits.ExitTrace.tables)."""
        kept = self.exit_threshold.clone()
        self._exit_trace = ExitTrace()
        try:
            for batch in batches:
                self._exit_trace.next_batch()
                self.mean_gflops([batch])
            return self._exit_trace.tables()
        finally:
            self._exit_trace = None
            self.exit_threshold.copy_(kept)

    @torch.no_grad()
    def exit_thresholds_for(self, batches, shares) -> list[float]:
        """For each share, the confidence at which early exit costs that share of the GFLOPs without it on
        the batches: the lowest threshold whose cost reaches it (a lower one exits sooner and costs
        less), solved on the trace of one pass (c2f.heads.exits)."""
        kept = self.exit_threshold.clone()
        self.exit_threshold.fill_(float("inf"))
        without_exit = self.mean_gflops(batches)
        self.exit_threshold.copy_(kept)
        confidence, cost = self.exit_trace(batches)
        return [lowest_threshold_reaching(confidence, cost, share * without_exit) for share in shares]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # a head saved before early exit existed has no threshold: it never exits
        state_dict = dict(state_dict)
        state_dict.setdefault("exit_threshold", torch.tensor(float("inf")))
        return super().load_state_dict(state_dict, strict, assign)

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
        """One stage, every parameter, AdamW (heads with several stages override this)."""
        return [Stage("train", epochs[0], lrs[0], "adamw", list(self.parameters()))]

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
