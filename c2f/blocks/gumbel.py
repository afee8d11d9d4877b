"""Hard Gumbel-softmax decisions with an annealed temperature (AR-Net's policy; LiteEval's gate uses
torch's sampler directly).

In training a decision is a one-hot sample of the categorical distribution of the logits (the
arg-max of logits plus Gumbel noise) whose gradient is that of the tempered softmax
(straight-through): the forward pass is discrete at every temperature, and the temperature only
shapes the gradient. At evaluation the decision is the arg-max, so that it is the same every time
(c2f predict must make the cache's decisions). AR-Net's schedule lowers the temperature by a
constant factor each epoch: tau = tau_start * exp(-tau_decay * epoch) (its released code: start 5,
decay 0.045 an epoch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.core.options import option

from ..methods import Settings


@dataclass
class GumbelSchedule(Settings):
    """Settings of a head trained with hard Gumbel-softmax decisions and an exponentially falling temperature."""
    tau_start: float = option(5.0, "Gumbel-softmax temperature at the first epoch", above=0)
    tau_decay: float = option(0.045, "the temperature falls by exp(-this) each epoch", minimum=0)


class AnnealedGumbel:
    """Hard decisions over the last axis of logits: a straight-through Gumbel-softmax sample at the
    current temperature in training, the arg-max at evaluation."""

    def __init__(self, start: float, decay_per_epoch: float):
        self.start, self.decay = start, decay_per_epoch
        self.tau = start

    def set_epoch(self, epoch: float) -> None:
        self.tau = self.start * math.exp(-self.decay * epoch)

    def decide(self, logits: torch.Tensor, sample: bool) -> torch.Tensor:
        """[..., A] one-hot decisions (float; with the tempered softmax's gradient when sampled)."""
        if sample:
            return F.gumbel_softmax(logits, tau=self.tau, hard=True)
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
