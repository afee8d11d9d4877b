"""LSTM and LSTM+CF (LiteEval Table 1): a recurrent network over the fine features (LSTM+CF:
[coarse, fine] concatenated) of `frames` evenly spaced frames; the last step classifies."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..data import Batch, uniform_positions
from ..methods import Method, Role, register
from .base import Head, HeadDims, HeadOutput
from .rnn import Cell


class LSTMHead(Head):
    def __init__(self, dims: HeadDims, frames: int = 25, combine: bool = False, hidden: int = 512,
                 rnn: str = "lstm"):
        super().__init__(dims)
        self.frames, self.combine = frames, combine
        self.input_dim = dims.fine_dim + (dims.coarse_dim if combine else 0)
        self.cell = Cell(rnn, self.input_dim, hidden)
        self.classifier = nn.Linear(hidden, dims.num_classes)

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        positions = uniform_positions(batch.lengths, self.frames)
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

    def cost_probes(self):
        return {"step": (self.cell, (torch.zeros(1, self.input_dim), self.cell.initial_state(1))),
                "classifier": (self.classifier, (torch.zeros(1, self.cell.hidden_size),))}


register(Method("lstm", lambda dims, cfg: LSTMHead(dims, cfg.frames, combine=False, hidden=cfg.fine_hidden, rnn=cfg.rnn),
                {"fine": Role("fine")}, frames=25, budgeted=False,
                summary="an RNN over the fine features of evenly spaced frames"))
register(Method("lstm_cf", lambda dims, cfg: LSTMHead(dims, cfg.frames, combine=True, hidden=cfg.fine_hidden,
                                                      rnn=cfg.rnn),
                {"coarse": Role("coarse"), "fine": Role("fine")}, frames=25, budgeted=False,
                summary="LSTM+CF: an RNN over [coarse, fine] features"))
