"""A global memory of cheap features read by soft attention with a query (AdaFrame's global memory,
Wu et al. 2019): the cheap feature of a few evenly spaced frames, each with a sinusoidal positional
encoding (Vaswani et al. 2017) added so that an entry also says where in the video it is; a query made
from the reader's state (a linear map of an RNN's hidden state) scores every entry by a dot product,
and the context read is the softmax-weighted sum of the encoded entries, so that it tells both what the
attended frames look like and where they are. The memory is made once per video; each read is one
linear map and two small matrix products (counted by FlopCounterMode: `GlobalMemory` is the probe)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def positional_encoding(entries: int, dim: int) -> torch.Tensor:
    """[entries, dim]: sin at the even dimensions, cos at the odd ones, wavelengths from 2 pi to
    10000 x 2 pi (the Transformer's)."""
    position = torch.arange(entries, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    encoding = torch.zeros(entries, dim)
    encoding[:, 0::2] = torch.sin(position * rates)
    encoding[:, 1::2] = torch.cos(position * rates[: dim // 2])
    return encoding


class GlobalMemory(nn.Module):
    """Soft attention over a memory of `entries` feature vectors of `dim` dimensions, queried from a
    state of `query_size`."""

    def __init__(self, query_size: int, dim: int, entries: int):
        super().__init__()
        self.dim, self.entries = dim, entries
        self.query = nn.Linear(query_size, dim)
        self.register_buffer("encoding", positional_encoding(entries, dim), persistent=False)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """The memory of a batch: [B, entries, dim] features, their positional encoding added."""
        return features + self.encoding

    def forward(self, memory: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the encoded memory [B, M, D] with queries from states [B, Q]: (context [B, D], weights [B, M])."""
        scores = torch.bmm(memory, self.query(state)[:, :, None])[:, :, 0]
        weights = scores.softmax(-1)
        return torch.bmm(weights[:, None, :], memory)[:, 0], weights
