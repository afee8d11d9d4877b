"""Dot-product attention of a recurrent query over a video's per-frame features (Listen to Look's
ImgAud-Skimming): a key from each candidate frame's feature, a query from a recurrent state, and the
scaled dot products q . k / sqrt(d) over the frames not picked yet. Their softmax weights average the
frames' features where training needs a gradient through the choice; their arg-max picks one frame
where only that frame may be read. No method: any head that searches a video's frames by content."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class FrameAttention(nn.Module):
    """Keys: a linear projection of each frame's feature, normalised, through a ReLU; the query: a
    two-layer MLP of the state (as the authors' code, with LayerNorm in place of its BatchNorm, so that a
    batch of one video trains and a video's scores never depend on the others in its batch)."""

    def __init__(self, key_input: int, state_size: int, dim: int):
        super().__init__()
        self.dim = dim
        self.key = nn.Sequential(nn.Linear(key_input, dim), nn.LayerNorm(dim), nn.ReLU())
        self.query = nn.Sequential(nn.Linear(state_size, state_size), nn.LayerNorm(state_size), nn.ReLU(),
                                   nn.Linear(state_size, dim))

    def keys(self, features: torch.Tensor) -> torch.Tensor:
        """[B, T, D] per-frame features -> [B, T, dim] keys (computed once a video)."""
        return self.key(features)

    def scores(self, state: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """[B, T] scaled dot products of the state's query with each frame's key; -inf where not `allowed`
        ([B, T] bool, at least one True a row)."""
        query = self.query(state)
        scores = (keys @ query.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.dim)
        return scores.masked_fill(~allowed, float("-inf"))

    def forward(self, state: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """One step's query and its scores over every key (what a step costs)."""
        return self.scores(state, keys, torch.ones(keys.shape[:2], dtype=torch.bool, device=keys.device))


def weighted_average(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """[B, T] weights (summing to 1) x [B, T, D] features -> [B, D]."""
    return (weights.unsqueeze(1) @ features).squeeze(1)


def mark_picked(taken: torch.Tensor, positions: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """`taken` ([B, T] bool) with every candidate at the frame picked in each row (picked [B], an index
    into the row's candidates) marked: a frame is never picked twice, even where a short video gives
    several candidates the same frame (positions [B, T])."""
    return taken | (positions == positions.gather(1, picked[:, None]))
