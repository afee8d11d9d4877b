"""LSTM and LSTM+CF (LiteEval Table 1): a recurrent network over the fine features (LSTM+CF:
[coarse, fine] concatenated) of `frames` evenly spaced frames; the last step classifies."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data import Batch, uniform_positions
from ..methods import COARSE, FINE, Method, Preset, register
from ..blocks.head import EvenFrames, Head, HeadDims, HeadOutput
from ..blocks.exits import EarlyExit, running_steps
from ..blocks.rnn import Cell, FineRNN


@dataclass
class LSTMSettings(EvenFrames, FineRNN):
    """An RNN over evenly spaced frames."""


class LSTMHead(EarlyExit, Head):

    def __init__(self, dims: HeadDims, settings: LSTMSettings = LSTMSettings(), combine: bool = False):
        super().__init__(dims)
        self.frames, self.combine = settings.frames, combine
        self.input_dim = dims.fine_dim + (dims.coarse_dim if combine else 0)
        self.cell = Cell(settings.rnn, self.input_dim, settings.fine_hidden)
        self.classifier = nn.Linear(settings.fine_hidden, dims.num_classes)

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        positions = uniform_positions(batch.lengths, self.frames)
        if self.exits:
            return self._exiting(batch, positions)
        inputs = batch.read_frames("fine", positions)
        if self.combine:
            inputs = torch.cat([batch.read_frames("coarse", positions), inputs], dim=-1)
        state = self.cell.initial_state(len(batch), inputs.device)
        for projected in self.cell.project(inputs).unbind(1):    # all steps in one matmul, split once
            state = self.cell.step(projected, state)
        logits = self.classifier(self.cell.hidden(state))
        head = torch.full((len(batch),), self.frames * self.costs["step"] + self.costs["classifier"],
                          device=logits.device)
        return HeadOutput(logits, head)

    def _exiting(self, batch: Batch, positions: torch.Tensor) -> HeadOutput:
        """Step after step, each video classifying at every step and stopping once it is confident."""
        device = batch.mask.device
        state = self.cell.initial_state(len(batch), device)
        logits = torch.zeros(len(batch), self.dims.num_classes, device=device)
        steps = torch.zeros(len(batch), device=device)
        active = torch.ones(len(batch), dtype=torch.bool, device=device)
        for rows, frames in running_steps(active, positions):
            x = batch.read("fine", rows, frames)
            if self.combine:
                x = torch.cat([batch.read("coarse", rows, frames), x], dim=-1)
            state[rows] = self.cell(x, state[rows])
            logits[rows] = self.classifier(self.cell.hidden(state[rows]))
            steps[rows] += 1
            spent = steps[rows] * (self.costs["step"] + self.costs["classifier"])
            active[rows[self.stops(batch, rows, logits[rows], spent)]] = False
        return HeadOutput(logits, steps * (self.costs["step"] + self.costs["classifier"]))

    def cost_probes(self):
        return {"step": (self.cell, (torch.zeros(1, self.input_dim), self.cell.initial_state(1))),
                "classifier": (self.classifier, (torch.zeros(1, self.cell.hidden_size),))}


_PAPER = {"method": "lstm", "fine": "resnet101@224", "frames": 25, "fine_hidden": 512, "optimizer": "adam", "lr": 1e-4,
          "batch_size": 128, "weight_decay": 1e-4, "epochs": 100}
_SOURCE = ("LiteEval Sec. 4.1 (the LSTM baseline: 25 frames, LiteEval's fine RNN size and optimiser on ActivityNet: "
           "Adam at 1e-4, L2 1e-4, the rate / 10 at epochs 40 and 80 as the released main.py); epochs as "
           "liteeval-activitynet")
register(Method("lstm", lambda dims, s: LSTMHead(dims, s, combine=False), LSTMSettings, {"fine": FINE},
                budgeted=False, summary="an RNN over the fine features of evenly spaced frames",
                presets={"lstm-activitynet": Preset(_PAPER, _SOURCE)}))
register(Method("lstm_cf", lambda dims, s: LSTMHead(dims, s, combine=True), LSTMSettings,
                {"coarse": COARSE, "fine": FINE}, budgeted=False,
                summary="LSTM+CF: an RNN over [coarse, fine] features"))
