"""LiteEval (Wu et al.): a coarse RNN reads the cheap feature of every frame; a gate over
[coarse feature, previous fine hidden state] decides whether to read the expensive one; a
fine RNN reads [coarse, fine] where the gate fires and is synced with the coarse RNN where
it does not (Eq. 5); the fine RNN's last hidden state classifies.

Training computes densely (the gate needs a gradient through both branches): the gate is
a hard straight-through Gumbel-softmax sample with an annealed temperature (`liteeval`),
or a Bernoulli sample trained by REINFORCE (`liteeval_rl`). Evaluation is sparse: the
fine feature is read, and the fine RNN stepped, only for the rows whose gate fired.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical

from pipeline.core.errors import SettingsError
from pipeline.core.options import option

from ..data import Batch
from ..methods import COARSE, FINE, Method, Preset, register
from ..blocks.exits import EarlyExit
from ..blocks.head import Head, HeadDims, HeadOutput, Knob
from ..blocks.rnn import Cell, FineRNN

GATE_TRAINING = ("gumbel", "reinforce")
GATE_RATES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75)       # the operating curve's targets
BISECTION_STEPS = 20        # the gate threshold to 60 / 2**20 of a logit


@dataclass
class LiteEvalSettings(FineRNN):
    coarse_hidden: int = option(64, "coarse RNN size (ActivityNet 64; FCVID 512)", minimum=1, variant=True)
    gamma: float = option(0.05, "target fraction of fine reads", minimum=0, maximum=1, variant=True)
    lam: float = option(2.0, "weight of the fire-rate penalty", minimum=0, variant=True)
    sync: bool = option(True, "sync the fine RNN with the coarse one (--no-sync: do not)", variant=True)
    tau_start: float = option(5.0, "Gumbel-softmax temperature, first epoch", above=0)
    tau_end: float = option(0.5, "... and last epoch (exponential annealing)", above=0)
    calibrate_gate: bool = option(True, "after training, set the gate's threshold on the training videos so that "
                                        "--gamma of their frames read the fine feature at test time "
                                        "(--no-calibrate-gate: the gate's arg-max, as the paper)")

    def __post_init__(self):
        super().__post_init__()
        if self.sync and self.coarse_hidden > self.fine_hidden:
            raise SettingsError(f"sync copies the coarse state into the fine one: --coarse-hidden "
                                f"({self.coarse_hidden}) must not exceed --fine-hidden ({self.fine_hidden})")


class LiteEvalHead(EarlyExit, Head):

    def __init__(self, dims: HeadDims, settings: LiteEvalSettings = LiteEvalSettings(), gate_training: str = "gumbel"):
        super().__init__(dims)
        if gate_training not in GATE_TRAINING:
            raise ValueError(f"gate_training must be one of {GATE_TRAINING}, not {gate_training!r}")
        s = settings
        self.sync, self.gamma, self.lam, self.gate_training = s.sync, s.gamma, s.lam, gate_training
        self.calibrate, self.tau_start, self.tau_end, self.tau = s.calibrate_gate, s.tau_start, s.tau_end, s.tau_start
        self.coarse_cell = Cell(s.rnn, dims.coarse_dim, s.coarse_hidden)
        self.fine_cell = Cell(s.rnn, dims.coarse_dim + dims.fine_dim, s.fine_hidden)
        self.gate = nn.Linear(dims.coarse_dim + s.fine_hidden, 2)       # logits of (skip, read fine)
        self.classifier = nn.Linear(s.fine_hidden, dims.num_classes)
        # at test the gate reads the fine feature where logit(read) - logit(skip) exceeds this (0: the arg-max);
        # after training it is solved on the training set so that --gamma of its frames read it
        self.register_buffer("gate_threshold", torch.tensor(0.0))
        self.argmax_fire_rate: float | None = None          # on the training videos, after training
        self.calibrated_fire_rate: float | None = None

    def set_progress(self, fraction: float) -> None:
        # exponential annealing from tau_start (exploration) to tau_end (near-discrete samples)
        self.tau = self.tau_start * (self.tau_end / self.tau_start) ** fraction

    def _skipped(self, coarse_state: torch.Tensor, fine_state: torch.Tensor) -> torch.Tensor:
        """The fine state of a frame whose fine feature is not read (Eq. 4 / Eq. 5)."""
        return self.fine_cell.sync_from(self.coarse_cell, coarse_state, fine_state) if self.sync else fine_state

    def _cost(self, coarse_steps: torch.Tensor, fine_steps: torch.Tensor, checks: torch.Tensor | None = None) -> torch.Tensor:
        """Each step's coarse RNN and gate, each fine step, and the classifier: once, or at every step
        checked for an early exit."""
        c = self.costs
        classified = checks if checks is not None else 1
        return (coarse_steps * (c["coarse_step"] + c["gate"]) + fine_steps * c["fine_step"]
                + classified * c["classifier"]).detach().float()

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        if self.training:
            return self._forward_dense(batch)
        return self._forward_sparse(batch, fine_budget)

    def _forward_dense(self, batch: Batch) -> HeadOutput:
        coarse, fine = batch.read_all("coarse"), batch.read_all("fine")
        # all steps' input projections in one matmul each; unbind the time axis once (indexing
        # [:, t] per step would make autograd write a full-size zero gradient at every step)
        coarse_in = self.coarse_cell.project(coarse).unbind(1)
        fine_in = self.fine_cell.project(torch.cat([coarse, fine], dim=-1)).unbind(1)
        coarse_steps, presence = coarse.unbind(1), batch.mask.float().unbind(1)
        B, T = batch.mask.shape
        coarse_state = self.coarse_cell.initial_state(B, coarse.device)
        fine_state = self.fine_cell.initial_state(B, coarse.device)
        fired, log_probs = [], []
        for t in range(T):
            present = presence[t][:, None]
            new_coarse = self.coarse_cell.step(coarse_in[t], coarse_state)
            gate_logits = self.gate(torch.cat([coarse_steps[t], self.fine_cell.hidden(fine_state)], dim=1))
            if self.gate_training == "gumbel":
                use_fine = F.gumbel_softmax(gate_logits, tau=self.tau, hard=True)[:, 1:]
            else:
                decision = Categorical(logits=gate_logits)
                action = decision.sample()
                log_probs.append(decision.log_prob(action) * present[:, 0])
                use_fine = action[:, None].float()
            new_fine = (use_fine * self.fine_cell.step(fine_in[t], fine_state)
                        + (1 - use_fine) * self._skipped(new_coarse, fine_state))
            coarse_state = present * new_coarse + (1 - present) * coarse_state
            fine_state = present * new_fine + (1 - present) * fine_state
            fired.append(use_fine[:, 0] * present[:, 0])
        fired = torch.stack(fired, dim=1)
        lengths = batch.lengths.to(fired.device).float()
        penalty = self.lam * (fired.sum(1) / lengths - self.gamma) ** 2     # Eq. 7, per video
        out = HeadOutput(self.classifier(self.fine_cell.hidden(fine_state)), self._cost(lengths, fired.sum(1)))
        out.logs["fired"] = float((fired.sum(1) / lengths).mean().detach())
        if self.gate_training == "gumbel":
            out.extra_loss["fire_rate"] = penalty.mean()
        else:
            out.action_log_prob, out.reward_penalty = torch.stack(log_probs, 1).sum(1), penalty
        return out

    @torch.no_grad()
    def _forward_sparse(self, batch: Batch, fine_budget: int | None) -> HeadOutput:
        B, device = len(batch), batch.mask.device
        coarse_state = self.coarse_cell.initial_state(B, device)
        fine_state = self.fine_cell.initial_state(B, device)
        coarse_steps = torch.zeros(B, device=device)
        fine_steps = torch.zeros(B, device=device)
        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        for t in range(batch.max_length):
            rows = (batch.mask[:, t] & ~stopped).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                break               # videos are prefixes of the time axis: nothing later is active
            coarse = batch.read("coarse", rows, t)
            new_coarse = self.coarse_cell(coarse, coarse_state[rows])
            old_fine = fine_state[rows]
            gate = self.gate(torch.cat([coarse, self.fine_cell.hidden(old_fine)], dim=1))
            read_fine = gate[:, 1] - gate[:, 0] > self.gate_threshold
            new_fine = self._skipped(new_coarse, old_fine)
            if read_fine.any():     # only here is the fine feature touched and the fine RNN run
                fired_rows = rows[read_fine]
                fine = batch.read("fine", fired_rows, t)
                projected = self.fine_cell.project(torch.cat([coarse[read_fine], fine], dim=1))
                new_fine[read_fine] = self.fine_cell.step(projected, old_fine[read_fine])
                fine_steps[fired_rows] += 1
            coarse_state[rows], fine_state[rows] = new_coarse, new_fine
            coarse_steps[rows] += 1
            if fine_budget is not None:
                stopped |= fine_steps >= fine_budget
            if self.exits:          # the fine RNN classifies at every step; a sure video stops
                spent = self._cost(coarse_steps[rows], fine_steps[rows], coarse_steps[rows])
                stopped[rows[self.stops(batch, rows, self.classifier(self.fine_cell.hidden(new_fine)), spent)]] = True
        logits = self.classifier(self.fine_cell.hidden(fine_state))
        out = HeadOutput(logits, self._cost(coarse_steps, fine_steps, coarse_steps if self.exits else None))
        out.logs["fired"] = fine_steps / coarse_steps.clamp(min=1)           # per video, of the frames seen
        return out

    # ------------------------------------------------------------------ the gate's test-time budget

    @torch.no_grad()
    def fire_rate(self, batches) -> float:
        """The mean per-video fraction of frames whose fine feature the evaluation reads."""
        rates = [self._forward_sparse(batch, None).logs["fired"] for batch in batches]
        return float(torch.cat(rates).mean())

    @torch.no_grad()
    def thresholds_for_rates(self, batches, rates) -> list[float]:
        """For each rate, the gate threshold at which that share of the batches' frames read the fine
        feature (the rate falls as the threshold rises: a bisection, each bracket narrowed by the rates
        already solved); the head's own threshold is left as it was."""
        kept, was_training = self.gate_threshold.clone(), self.training
        self.eval()
        solved: dict[float, float] = {}
        for rate in rates:
            low = max([t for r, t in solved.items() if r > rate], default=-30.0)
            high = min([t for r, t in solved.items() if r < rate], default=30.0)
            for _ in range(BISECTION_STEPS):
                self.gate_threshold.fill_((low + high) / 2)
                low, high = (low, float(self.gate_threshold)) if self.fire_rate(batches) < rate else \
                    (float(self.gate_threshold), high)
            solved[rate] = (low + high) / 2
        self.gate_threshold.copy_(kept)
        self.train(was_training)
        return [solved[rate] for rate in rates]

    @torch.no_grad()
    def after_stage(self, name: str, batches) -> None:
        """Solve the gate's threshold on the training videos so that --gamma of their frames read the
        fine feature at test time, as the penalty asked in training (the arg-max of a gate trained on
        Gumbel samples can read far less, or far more)."""
        self.eval()
        self.gate_threshold.fill_(0.0)
        self.argmax_fire_rate = self.fire_rate(batches)
        if self.calibrate:
            self.gate_threshold.fill_(self.thresholds_for_rates(batches, [self.gamma])[0])
        self.calibrated_fire_rate = self.fire_rate(batches)
        self.train()

    def knobs(self) -> list[Knob]:
        gate = Knob("gate", "gate_threshold", GATE_RATES, "share of the training frames reading the fine feature",
                    self.thresholds_for_rates)
        return [gate] + super().knobs()

    def summary(self) -> dict:
        if self.argmax_fire_rate is None:
            return {}
        return {"gate_threshold": float(self.gate_threshold), "train_fire_rate_argmax": self.argmax_fire_rate,
                "train_fire_rate": self.calibrated_fire_rate}

    def cost_probes(self):
        Dc, Df = self.dims.coarse_dim, self.dims.fine_dim
        return {"coarse_step": (self.coarse_cell, (torch.zeros(1, Dc), self.coarse_cell.initial_state(1))),
                "gate": (self.gate, (torch.zeros(1, Dc + self.fine_cell.hidden_size),)),
                "fine_step": (self.fine_cell, (torch.zeros(1, Dc + Df), self.fine_cell.initial_state(1))),
                "classifier": (self.classifier, (torch.zeros(1, self.fine_cell.hidden_size),))}


_ROLES = {"coarse": COARSE, "fine": FINE}
# the paper's optimiser exactly (Adam, L2 1e-4, every weight at 1e-4, the rate / 10 at epochs 40 and 80): --optimizer adam
_PAPER = {"method": "liteeval", "coarse": "mobilenet_v2@112", "fine": "resnet101@224", "gamma": 0.05, "lam": 2.0,
          "optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "epochs": 100}
_SOURCE = ("LiteEval Sec. 4.1 (Adam at 1e-4, lambda 2, the batch and hidden sizes of each dataset), Table 7 (gamma "
           "0.05); the L2 weight decay 1e-4, the rate steps at epochs 40 and 80 (MultiStepLR) and the gradient clip 5 "
           "from the released main.py. The number of epochs is stated in neither: 100, past the last rate step")
PRESETS = {"liteeval-activitynet": Preset(_PAPER | {"coarse_hidden": 64, "fine_hidden": 512, "batch_size": 128}, _SOURCE),
           "liteeval-fcvid": Preset(_PAPER | {"coarse_hidden": 512, "fine_hidden": 2048, "batch_size": 256}, _SOURCE),
           "liteeval-kinetics": Preset(_PAPER | {"coarse_hidden": 1024, "fine_hidden": 2048, "batch_size": 512}, _SOURCE)}
register(Method("liteeval", lambda dims, s: LiteEvalHead(dims, s, "gumbel"), LiteEvalSettings, _ROLES, budgeted=True,
                summary="LiteEval: a gate reads the fine feature where needed (Gumbel-softmax)", presets=PRESETS))
register(Method("liteeval_rl", lambda dims, s: LiteEvalHead(dims, s, "reinforce"), LiteEvalSettings, _ROLES,
                budgeted=True, summary="LiteEval with the gate trained by REINFORCE"))
