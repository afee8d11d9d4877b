"""Recurrent cells stepped by hand: LSTM, GRU and SRU behind one interface.

Why not nn.LSTM: the heads step one frame at a time and update only some rows (the fine
RNN runs only where the gate fired), and torch's FlopCounterMode counts nothing inside
the fused nn.LSTM kernel. Here the input projection of all steps is one matmul
(`project`), and a step (`step`) is the recurrent part only.

A state is one tensor [B, state_size]: [h | c] for LSTM and SRU, [h] for GRU, so that
LiteEval's sync can copy the coarse state into the first dims of each part of the fine one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from pipeline.core.options import option

from ..methods import Settings

RNN_KINDS = ("lstm", "gru", "sru")
_PROJECTION_WIDTH = {"lstm": 4, "gru": 3, "sru": 4}      # gates computed from the input
_STATE_PARTS = {"lstm": 2, "gru": 1, "sru": 2}          # h (and c)


class Cell(nn.Module):
    def __init__(self, kind: str, input_size: int, hidden_size: int):
        super().__init__()
        if kind not in RNN_KINDS:
            raise ValueError(f"unknown rnn {kind!r}; choose one of {', '.join(RNN_KINDS)}")
        self.kind, self.input_size, self.hidden_size = kind, input_size, hidden_size
        self.input_proj = nn.Linear(input_size, _PROJECTION_WIDTH[kind] * hidden_size)
        # SRU (Lei et al. 2017) has no hidden-to-hidden matmul: its recurrence is elementwise
        self.hidden_proj = None if kind == "sru" else nn.Linear(hidden_size, _PROJECTION_WIDTH[kind] * hidden_size,
                                                                bias=False)
        if kind == "lstm":      # forget-gate bias 1: remember by default early in training
            with torch.no_grad():
                self.input_proj.bias[hidden_size:2 * hidden_size].fill_(1.0)

    @property
    def state_parts(self) -> int:
        return _STATE_PARTS[self.kind]

    @property
    def state_size(self) -> int:
        return self.state_parts * self.hidden_size

    def initial_state(self, batch: int, device=None) -> torch.Tensor:
        return torch.zeros(batch, self.state_size, device=device)

    def hidden(self, state: torch.Tensor) -> torch.Tensor:
        return state[..., : self.hidden_size]

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """Input part of every gate, for any leading shape ([B, D] or [B, T, D])."""
        return self.input_proj(inputs)

    def forward(self, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One step from raw inputs [B, D] (project, then step): what a step costs."""
        return self.step(self.project(inputs), state)

    def step(self, projected: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One step from projected inputs [..., P] and states [..., S] (any leading shapes that
        broadcast: AdaFocus steps one state [B, 1, S] with every candidate patch [B, A, P])."""
        H = self.hidden_size
        if self.kind == "lstm":
            h, c = state[..., :H], state[..., H:]
            i, f, g, o = (projected + self.hidden_proj(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)
        if self.kind == "gru":
            x_r, x_z, x_n = projected.chunk(3, dim=-1)
            h_r, h_z, h_n = self.hidden_proj(state).chunk(3, dim=-1)
            reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            candidate = torch.tanh(x_n + reset * h_n)
            return (1 - update) * candidate + update * state
        # SRU: c_t = f*c + (1-f)*Wx ; h_t = r*tanh(c_t) + (1-r)*highway(x)
        c = state[..., H:]
        x_tilde, f, r, highway = projected.chunk(4, dim=-1)
        f, r = torch.sigmoid(f), torch.sigmoid(r)
        c = f * c + (1 - f) * x_tilde
        return torch.cat([r * torch.tanh(c) + (1 - r) * highway, c], dim=-1)

    def sync_from(self, coarse: "Cell", coarse_state: torch.Tensor, fine_state: torch.Tensor) -> torch.Tensor:
        """LiteEval Eq. 5: the fine state takes the coarse state in its first D_c dims, per part."""
        Hc, Hf = coarse.hidden_size, self.hidden_size
        parts = []
        for p in range(self.state_parts):
            fine_part = fine_state[:, p * Hf:(p + 1) * Hf]
            parts += [coarse_state[:, p * Hc:(p + 1) * Hc], fine_part[:, Hc:]]
        return torch.cat(parts, dim=1)


@dataclass
class FineRNN(Settings):
    """Settings of the heads with a recurrent network over the fine features."""
    rnn: str = option("lstm", "recurrent cell", choices=RNN_KINDS, variant=True)
    fine_hidden: int = option(512, "fine RNN size (LiteEval: ActivityNet 512, FCVID 2048)", minimum=1, variant=True)
    # a recurrent head needs large weights to remember over many steps: ten times as much collapses it
    weight_decay: float = option(1.0, "AdamW's decoupled weight decay (each step shrinks every weight by the rate "
                                      "times this)", minimum=0)
