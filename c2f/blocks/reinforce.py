"""REINFORCE (Williams 1992) for the heads whose decisions are sampled: the policy-gradient loss with a
baseline. The batch's mean reward is the default baseline (lower variance, no extra network); a head
with a learned baseline (AdaFrame's utility network) gives its own."""
from __future__ import annotations

import torch


def reinforce_loss(action_log_prob: torch.Tensor, reward: torch.Tensor,
                   baseline: torch.Tensor | None = None) -> torch.Tensor:
    """-(reward - baseline) x log-prob of the actions taken, averaged; the baseline (default: the
    batch's mean reward) is not trained through this loss."""
    baseline = reward.mean() if baseline is None else baseline
    advantage = reward - baseline
    return -(advantage.detach() * action_log_prob).mean()
