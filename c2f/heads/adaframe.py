"""AdaFrame (Wu, Xiong, Ma, Socher, Davis, CVPR 2019; TPAMI 2020): an LSTM that visits a few of a
video's frames, choosing where to look next, and stops when it expects nothing more from looking.

Before the first step the global memory (c2f.blocks.memory) holds the cheap feature of `memory_frames`
evenly spaced frames. At each step the LSTM reads [the expensive feature of the frame it visits, the
context read from the memory with its previous hidden state as the query]; from its new hidden state
a linear classifier predicts, a utility head predicts the discounted sum of the rewards still to come,
and a location head gives the mean of a Gaussian over the next location in [0, 1] (sampled in
training, the mean at test), which snaps to the nearest of the `frames` cached positions (segment
centres at test, a random offset in each segment in training). The first frame is at `start`.

Training (REINFORCE with the utility as the baseline): the reward of a step is how far the margin of
the true class over the best other class (softmax) rises above the best margin of the steps before,
and 0 if it does not; each location is credited with the discounted rewards of the steps after it. The
loss is the cross-entropy of every step's prediction, the policy gradient, and `utility_weight` times
half the squared error of the utility. At test a video stops after the step whose utility is at most
`utility_threshold` (solved on the training videos, `stop_share`), or after `max_steps`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

from pipeline.core.options import option

from ..blocks.exits import EarlyExit
from ..blocks.head import Head, HeadDims, HeadOutput, Knob, soft_targets
from ..blocks.memory import GlobalMemory
from ..blocks.reinforce import reinforce_loss
from ..blocks.rnn import Cell, FineRNN
from ..data import Batch, segment_positions
from ..methods import COARSE, FINE, Method, Preset, register

STOP_SHARES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)   # the operating curve's targets: shares of --max-steps


@dataclass
class AdaFrameSettings(FineRNN):
    frames: int = option(16, "cached positions a chosen location snaps to (segments: their centres at test, a random "
                             "offset in each in training)", minimum=1, variant=True)
    memory_frames: int = option(16, "frames whose cheap feature the global memory holds", minimum=1, variant=True)
    max_steps: int = option(10, "most frames a video visits (AdaFrame-10)", minimum=1, variant=True)
    stop_share: float = option(0.85, "after training, the utility threshold is solved on the training videos so that "
                                     "they visit this share of --max-steps frames on average (1: never stop early)",
                               above=0, maximum=1, variant=True)
    start: float = option(0.5, "where the first frame is, as a share of the video's length", minimum=0, maximum=1)
    location_std: float = option(0.1, "standard deviation of the Gaussian over the next location (in video lengths)",
                                 above=0)
    discount: float = option(0.9, "discount of later rewards", minimum=0, maximum=1)
    utility_weight: float = option(1.0, "weight of the utility's squared error", minimum=0)


def margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, S]: the probability of the best true class minus that of the best other class, at every step."""
    probs, true = logits.softmax(-1), (targets > 0)[:, None, :]
    return probs.masked_fill(~true, -1).amax(-1) - probs.masked_fill(true, -1).amax(-1)


def returns(margin: torch.Tensor, discount: float) -> torch.Tensor:
    """[B, S-1]: for each step but the last, the discounted sum of the rewards of the steps after it, a
    step's reward being how far its margin rises above the best margin before it (0 if it does not)."""
    best_before = margin.cummax(1).values[:, :-1]
    rewards = (margin[:, 1:] - best_before).clamp(min=0)
    out, running = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for step in reversed(range(rewards.shape[1])):
        running = rewards[:, step] + discount * running
        out[:, step] = running
    return out


class AdaFrameHead(EarlyExit, Head):
    video_loss = False          # the cross-entropy of every step (extra_loss)

    def __init__(self, dims: HeadDims, settings: AdaFrameSettings = AdaFrameSettings()):
        super().__init__(dims)
        s = settings
        self.frames, self.memory_frames, self.max_steps, self.start = s.frames, s.memory_frames, s.max_steps, s.start
        self.location_std, self.discount, self.utility_weight = s.location_std, s.discount, s.utility_weight
        self.stop_share = s.stop_share
        self.memory = GlobalMemory(s.fine_hidden, dims.coarse_dim, s.memory_frames)
        self.cell = Cell(s.rnn, dims.fine_dim + dims.coarse_dim, s.fine_hidden)
        self.classifier = nn.Linear(s.fine_hidden, dims.num_classes)
        self.utility = nn.Linear(s.fine_hidden, 1)
        self.locator = nn.Linear(s.fine_hidden, 1)
        # at test a video stops after a step whose utility is at most this (-inf: never); after_stage solves it
        self.register_buffer("utility_threshold", torch.tensor(float("-inf")))
        self._utilities: list | None = None         # set while the utilities of every step are recorded
        self.train_mean_steps: float | None = None

    # ------------------------------------------------------------------ where

    def _positions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached positions a location snaps to [B, frames], and the memory's frames [B, memory_frames]
        (the same ones when there are as many)."""
        candidates = segment_positions(batch.lengths, self.frames, random=self.training)
        if self.memory_frames == self.frames:
            return candidates, candidates
        return candidates, segment_positions(batch.lengths, self.memory_frames, random=self.training)

    def _snap(self, location: torch.Tensor) -> torch.Tensor:
        """The segment a location in [0, 1] falls in: the nearest segment centre."""
        return (location * self.frames).long().clamp(0, self.frames - 1).cpu()

    def _step(self, memory: torch.Tensor, fine: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        context, _ = self.memory(memory, self.cell.hidden(state))
        return self.cell(torch.cat([fine, context], dim=1), state)

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        return self._forward_train(batch) if self.training else self._forward_eval(batch, fine_budget)

    def _forward_train(self, batch: Batch) -> HeadOutput:
        """Every step of every video, the next location sampled; the fine features of every cached
        position are read at once (training may read densely)."""
        candidates, memory_positions = self._positions(batch)
        memory = self.memory.encode(batch.read_frames("coarse", memory_positions))
        fine = batch.read_frames("fine", candidates)
        B, device = len(batch), memory.device
        rows = torch.arange(B)
        state = self.cell.initial_state(B, device)
        location = torch.full((B,), self.start, device=device)
        hidden, log_probs = [], []
        for step in range(self.max_steps):
            state = self._step(memory, fine[rows, self._snap(location)], state)
            hidden.append(self.cell.hidden(state))
            if step < self.max_steps - 1:
                where = Normal(torch.sigmoid(self.locator(hidden[-1]))[:, 0], self.location_std)
                sample = where.sample()
                log_probs.append(where.log_prob(sample))
                location = sample.clamp(0.0, 1.0)
        hidden = torch.stack(hidden, 1)                           # [B, S, H]
        logits = self.classifier(hidden)
        target = soft_targets(batch.targets)[:, None, :].expand_as(logits)
        out = HeadOutput(logits[:, -1], self._cost(torch.full((B,), float(self.max_steps), device=device)))
        out.extra_loss["ce_steps"] = F.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1))
        if self.max_steps > 1:
            gains = returns(margins(logits.detach(), batch.targets), self.discount)
            utility = self.utility(hidden[:, :-1])[..., 0]
            out.extra_loss["utility"] = self.utility_weight * 0.5 * (utility - gains).pow(2).mean()
            out.extra_loss["policy"] = reinforce_loss(torch.stack(log_probs, 1).flatten(), gains.flatten(),
                                                      utility.detach().flatten())
            out.logs["return"] = float(gains[:, 0].mean())
        return out

    @torch.no_grad()
    def _forward_eval(self, batch: Batch, fine_budget: int | None) -> HeadOutput:
        """Step by step, each video reading only the frame it visits; a video stops after a step whose
        utility is at most the threshold (or sure enough: early exit), after its K-th step (an online
        budget K), or after max_steps."""
        candidates, memory_positions = self._positions(batch)
        memory = self.memory.encode(batch.read_frames("coarse", memory_positions))
        B, device = len(batch), memory.device
        steps_allowed = self.max_steps if fine_budget is None else min(self.max_steps, fine_budget)
        state = self.cell.initial_state(B, device)
        location = torch.full((B,), self.start, device=device)
        logits = torch.zeros(B, self.dims.num_classes, device=device)
        steps = torch.zeros(B, device=device)
        active = torch.ones(B, dtype=torch.bool, device=device)
        recorded = torch.full((B, steps_allowed), float("nan"))
        for step in range(steps_allowed):
            rows = active.nonzero(as_tuple=True)[0]
            if not len(rows):
                break
            fine = batch.read("fine", rows.cpu(), candidates[rows.cpu(), self._snap(location[rows])])
            state[rows] = self._step(memory[rows], fine, state[rows])
            hidden = self.cell.hidden(state[rows])
            logits[rows] = self.classifier(hidden)
            steps[rows] += 1
            utility = self.utility(hidden)[:, 0]
            recorded[rows.cpu(), step] = utility.float().cpu()
            stop = utility <= self.utility_threshold if self._utilities is None else torch.zeros_like(utility).bool()
            if self.exits:
                stop |= self.stops(batch, rows, logits[rows], self._cost(steps[rows]))
            active[rows[stop]] = False
            if step < steps_allowed - 1:
                location[rows[~stop]] = torch.sigmoid(self.locator(hidden[~stop]))[:, 0]
        if self._utilities is not None:
            self._utilities.append(recorded)
        return HeadOutput(logits, self._cost(steps))

    def _cost(self, steps: torch.Tensor) -> torch.Tensor:
        """The head's own GMACs after `steps` steps: each a memory read, an LSTM step, the classifier and the
        utility; a location between two steps."""
        c = self.costs
        per_step = c["memory"] + c["step"] + c["classifier"] + c["utility"]
        return (steps * per_step + (steps - 1).clamp(min=0) * c["locator"]).float()

    def cost_probes(self):
        H, Dc, M = self.cell.hidden_size, self.dims.coarse_dim, self.memory_frames
        hidden = torch.zeros(1, H)
        return {"memory": (self.memory, (torch.zeros(1, M, Dc), hidden)),
                "step": (self.cell, (torch.zeros(1, self.dims.fine_dim + Dc), self.cell.initial_state(1))),
                "classifier": (self.classifier, (hidden,)), "utility": (self.utility, (hidden,)),
                "locator": (self.locator, (hidden,))}

    # ------------------------------------------------------------------ the utility threshold

    @torch.no_grad()
    def recorded_utilities(self, batches) -> np.ndarray:
        """[V, max_steps - 1]: the utility after every step but the last of the batches' videos, from one
        evaluation that never stops (neither on the utility nor by early exit)."""
        was_training, kept = self.training, self.exit_threshold.clone()
        self.eval()
        self.exit_threshold.fill_(float("inf"))
        self._utilities = []
        try:
            for batch in batches:
                self(batch)
            return torch.cat(self._utilities).numpy()[:, : self.max_steps - 1]
        finally:
            self._utilities = None
            self.exit_threshold.copy_(kept)
            self.train(was_training)

    def utility_thresholds_for(self, batches, shares) -> list[float]:
        """For each share, the highest utility threshold at which the batches' videos visit at least that
        share of max_steps frames on average, solved on one recorded pass."""
        utilities = self.recorded_utilities(batches)
        return [threshold_for_steps(utilities, share * self.max_steps) for share in shares]

    def after_stage(self, name: str, batches) -> None:
        """Solve the utility threshold on the training videos so that they visit stop_share of max_steps."""
        utilities = self.recorded_utilities(batches)
        self.utility_threshold.fill_(threshold_for_steps(utilities, self.stop_share * self.max_steps))
        self.train_mean_steps = float(steps_at(utilities, float(self.utility_threshold)).mean())

    def knobs(self) -> list[Knob]:
        utility = Knob("utility", "utility_threshold", STOP_SHARES,
                       "share of --max-steps frames visited by the training videos", self.utility_thresholds_for)
        return [utility] + super().knobs()

    def summary(self) -> dict:
        if self.train_mean_steps is None:
            return {}
        return {"utility_threshold": float(self.utility_threshold), "train_mean_steps": self.train_mean_steps}


def steps_at(utilities: np.ndarray, threshold: float) -> np.ndarray:
    """[V]: the steps each video takes when it stops after its first step whose utility ([V, S-1], after
    each step but the last) is at most the threshold, else after all S."""
    stopping = utilities <= threshold
    return np.where(stopping.any(1), stopping.argmax(1) + 1, utilities.shape[1] + 1)


def threshold_for_steps(utilities: np.ndarray, goal: float) -> float:
    """The highest threshold at which the videos take at least `goal` steps on average (-inf, which stops
    none, where no recorded utility does): a bisection over the recorded utilities, the mean steps
    falling as the threshold rises."""
    candidates = np.unique(utilities[np.isfinite(utilities)])
    low, high = -1, len(candidates) - 1          # candidates[low] reaches the goal (-1: only -inf does)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if steps_at(utilities, candidates[middle]).mean() >= goal else (low, middle - 1)
    return float(candidates[low]) if low >= 0 else float("-inf")


_PAPER = {"method": "adaframe", "coarse": "mobilenet_v2@112", "fine": "resnet101@224", "frames": 16,
          "memory_frames": 16, "max_steps": 10, "optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "epochs": 100,
          "batch_size": 128}
_SOURCE = ("AdaFrame (CVPR 2019), abstract and introduction: ResNet-101, a utility stopping early; AdaFrame-10 visited "
           "8.65 frames on average on ActivityNet and 8.21 on FCVID (--stop-share 0.865 and 0.821 stand for its "
           "threshold, whose value is not given); 16 memory frames (its ablation's best); 16 cached positions as in "
           "AdaFocus's comparison. Not checked against the paper's full text: MobileNetV2 at "
           "112 px for the memory, at most 10 steps, the discount 0.9, the location's standard deviation 0.1, the "
           "first frame at the centre. Not known (c2f's choices): the optimiser (LiteEval's, the same authors' next "
           "paper on the same features: Adam at 1e-4, L2 1e-4, the rate / 10 at 40% and 80%, 100 epochs, batch 128), "
           "the LSTM size (512), the utility's weight (1)")
PRESETS = {"adaframe-activitynet": Preset(_PAPER | {"stop_share": 0.865}, _SOURCE),
           "adaframe-fcvid": Preset(_PAPER | {"stop_share": 0.821}, _SOURCE)}
register(Method("adaframe", AdaFrameHead, AdaFrameSettings, {"coarse": COARSE, "fine": FINE}, budgeted=True,
                summary="AdaFrame: an LSTM with a global memory chooses the next frame (REINFORCE) and stops when "
                        "its predicted utility is low", presets=PRESETS))
