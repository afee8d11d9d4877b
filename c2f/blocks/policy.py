"""The policy network of AdaFocus and AdaFocus+ (the paper and the authors' code): it reads the glance map of every frame
and gives logits over actions (candidate patches, or keep / skip) and a value for PPO's critic."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rnn import Cell

REDUCED_CHANNELS = 32


class GlancePolicy(nn.Module):
    """As the authors' code: 1x1 conv C -> 32, flatten, linear to `hidden`, GRU(hidden), an actor head
    (logits over `actions`) and a critic head. Its input is the glance map only, so its
    states do not depend on the actions and a whole sequence runs at once."""

    def __init__(self, channels: int, map_cells: int, hidden: int, actions: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, REDUCED_CHANNELS, 1)
        self.embed = nn.Linear(REDUCED_CHANNELS * map_cells, hidden)
        self.cell = Cell("gru", hidden, hidden)
        self.actor = nn.Linear(hidden, actions)
        self.critic = nn.Linear(hidden, 1)

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """maps [B, T, C, H, W] -> action logits [B, T, actions], values [B, T]."""
        B, T = maps.shape[:2]
        x = F.relu(self.reduce(maps.flatten(0, 1))).flatten(1)
        x = F.relu(self.embed(x)).view(B, T, -1)
        state, states = self.cell.initial_state(B, maps.device), []
        for projected in self.cell.project(x).unbind(1):
            state = self.cell.step(projected, state)
            states.append(state)
        states = torch.stack(states, 1)
        return self.actor(states), self.critic(states).squeeze(-1)

    def step(self, maps: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame at inference: maps [k, C, H, W], states [k, S] -> action logits [k, actions], the
        next states (no critic: it is not run at test time)."""
        x = F.relu(self.embed(F.relu(self.reduce(maps)).flatten(1)))
        state = self.cell(x, state)
        return self.actor(state), state

    def step_probe(self, maps: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One frame's inference cost."""
        return self.step(maps, state)[0]
