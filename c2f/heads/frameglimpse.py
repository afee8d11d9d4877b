"""FRAMEGLIMPSE (Yeung et al. 2016), as LiteEval compares with it: an agent that looks at a
fixed number of frames, choosing where to look next, trained with REINFORCE.

At each glimpse an RNN reads [fine feature, normalised position]; a location head gives
the mean of a Gaussian over the next position in [0, 1] (sampled in training, the mean at
test). The first glimpse is the video's centre. The last hidden state classifies; the
reward is the probability given to the video's labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Normal

from pipeline.core.options import option

from ..data import Batch
from ..methods import FINE, Method, register
from ..blocks.head import Head, HeadDims, HeadOutput
from ..blocks.rnn import Cell, FineRNN

LOCATION_STD = 0.1      # of the Gaussian over the next position, in units of the video's length


@dataclass
class FrameGlimpseSettings(FineRNN):
    glimpses: int = option(4, "frames looked at", minimum=1, variant=True)


class FrameGlimpseHead(Head):
    def __init__(self, dims: HeadDims, settings: FrameGlimpseSettings = FrameGlimpseSettings()):
        super().__init__(dims)
        self.glimpses, self.location_std = settings.glimpses, LOCATION_STD
        self.cell = Cell(settings.rnn, dims.fine_dim + 1, settings.fine_hidden)
        self.locator = nn.Linear(settings.fine_hidden, 1)
        self.classifier = nn.Linear(settings.fine_hidden, dims.num_classes)

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        glimpses = self.glimpses if fine_budget is None else min(self.glimpses, fine_budget)
        rows = torch.arange(len(batch))
        last = (batch.lengths - 1).to(batch.mask.device).float()
        location = torch.full((len(batch),), 0.5, device=batch.mask.device)
        state = self.cell.initial_state(len(batch), batch.mask.device)
        log_prob = torch.zeros(len(batch), device=batch.mask.device)
        for g in range(glimpses):
            positions = (location * last).round().long()
            observed = torch.cat([batch.read("fine", rows, positions), location[:, None]], dim=1)
            state = self.cell(observed, state)
            if g == glimpses - 1:
                break
            mean = torch.sigmoid(self.locator(self.cell.hidden(state)))[:, 0]
            if self.training:
                where = Normal(mean, self.location_std)
                sample = where.sample()
                log_prob = log_prob + where.log_prob(sample)
                location = sample.clamp(0.0, 1.0)
            else:
                location = mean
        logits = self.classifier(self.cell.hidden(state))
        c = self.costs
        cost = glimpses * c["step"] + (glimpses - 1) * c["locator"] + c["classifier"]
        out = HeadOutput(logits, torch.full((len(batch),), cost, device=logits.device))
        if self.training:
            out.action_log_prob = log_prob
        return out

    def cost_probes(self):
        hidden = torch.zeros(1, self.cell.hidden_size)
        return {"step": (self.cell, (torch.zeros(1, self.dims.fine_dim + 1), self.cell.initial_state(1))),
                "locator": (self.locator, (hidden,)), "classifier": (self.classifier, (hidden,))}


# Every weight at --lr, the 1280-d input layer included: with the width-scaled rate (2.2e-3 for that
# layer) the agent reached 0.35 top-1 on the real-video task of bench/train_defaults.py, with --lr for
# every weight 0.44 (six seeds each; docs/measurements/training-defaults.md).
register(Method("frameglimpse", FrameGlimpseHead, FrameGlimpseSettings, {"fine": FINE}, budgeted=True,
                summary="FRAMEGLIMPSE: an agent choosing where to look next (REINFORCE)", width_scaled_rate=False))
