"""FASTFORWARD (Fan et al. 2018), as LiteEval compares with it: an agent that reads a frame,
then decides how far to jump ahead (1, 2, 4, 8 or 16 frames) or to stop, trained with
REINFORCE. It starts at the first frame and stops at the end of the video at the latest.
The reward is the probability given to the video's labels minus `step_penalty` per frame read.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Categorical

from pipeline.core.options import option

from ..data import Batch
from ..methods import FINE, Method, register
from ..blocks.head import Head, HeadDims, HeadOutput
from ..blocks.rnn import Cell, FineRNN

JUMPS = (1, 2, 4, 8, 16)


@dataclass
class FastForwardSettings(FineRNN):
    step_penalty: float = option(0.01, "reward cost per frame read", minimum=0)


class FastForwardHead(Head):
    def __init__(self, dims: HeadDims, settings: FastForwardSettings = FastForwardSettings()):
        super().__init__(dims)
        self.step_penalty = settings.step_penalty
        self.cell = Cell(settings.rnn, dims.fine_dim, settings.fine_hidden)
        self.policy = nn.Linear(settings.fine_hidden, len(JUMPS) + 1)      # the last action stops
        self.classifier = nn.Linear(settings.fine_hidden, dims.num_classes)
        self.register_buffer("jumps", torch.tensor(JUMPS), persistent=False)

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        B, device = len(batch), batch.mask.device
        lengths = batch.lengths.to(device)
        position = torch.zeros(B, dtype=torch.long, device=device)
        alive = torch.ones(B, dtype=torch.bool, device=device)
        steps = torch.zeros(B, device=device)
        log_prob = torch.zeros(B, device=device)
        state = self.cell.initial_state(B, device)
        while alive.any():
            rows = alive.nonzero(as_tuple=True)[0]
            new_state = self.cell(batch.read("fine", rows, position[rows]), state[rows])
            state = state.index_copy(0, rows, new_state)         # out of place: autograd keeps each step
            steps = steps.index_add(0, rows, torch.ones(len(rows), device=device))
            action_logits = self.policy(self.cell.hidden(new_state))
            if self.training:
                decision = Categorical(logits=action_logits)
                action = decision.sample()
                log_prob = log_prob.index_add(0, rows, decision.log_prob(action))
            else:
                action = action_logits.argmax(1)
            target = position[rows] + self.jumps[action.clamp(max=len(JUMPS) - 1)]
            done = (action == len(JUMPS)) | (target >= lengths[rows])
            if fine_budget is not None:
                done |= steps[rows] >= fine_budget
            position[rows] = torch.where(done, position[rows], target)
            alive[rows[done]] = False
        logits = self.classifier(self.cell.hidden(state))
        c = self.costs
        out = HeadOutput(logits, (steps * (c["step"] + c["policy"]) + c["classifier"]).detach())
        if self.training:
            out.action_log_prob, out.reward_penalty = log_prob, self.step_penalty * steps
        return out

    def cost_probes(self):
        hidden = torch.zeros(1, self.cell.hidden_size)
        return {"step": (self.cell, (torch.zeros(1, self.dims.fine_dim), self.cell.initial_state(1))),
                "policy": (self.policy, (hidden,)), "classifier": (self.classifier, (hidden,))}


register(Method("fastforward", FastForwardHead, FastForwardSettings, {"fine": FINE}, budgeted=True,
                summary="FASTFORWARD: an agent choosing how far to jump, or to stop (REINFORCE)"))
