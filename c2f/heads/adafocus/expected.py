"""AdaFocus's stage II on a feature cache: the patch policy trained on every candidate's reward.

PPO (c2f.blocks.ppo) samples one patch per step and learns from its reward alone. A cache holds every
candidate's feature, so at each step the reward of every action (the frozen classifier's score of
the labels after one more step with that patch, the earlier patches fixed) is one batched
classifier step away, and the policy can be trained on all of them at once, with no sampling
variance for that step:

- `expected`: the optimum of the entropy-regularised expected reward at a step,
  max over pi of sum_a pi(a) A(a) + T H(pi), is softmax(A / T). The policy is fitted to it by
  cross-entropy, whose gradient (pi - target) does not vanish where pi(a) is small.
- `expected-ascent`: gradient ascent on sum_a pi(a) A(a) plus PPO's entropy bonus. Its exact
  gradient, pi(a) (A(a) - sum_b pi(b) A(b)), vanishes for a candidate the policy has pushed
  down early, which then never recovers (on the 7 x 7 synthetic grid, whole rows of the grid).

A(a), the advantage, is the candidate's score minus the mean over candidates at that step
(what Eq. 7's random-patch baseline is in expectation), scaled to unit standard deviation
over the batch, so that T means the same whatever the classifier's scale.
"""
from __future__ import annotations

import torch

from ...blocks.ppo import ENTROPY_BONUS

OBJECTIVES = ("expected", "expected-ascent")
TEMPERATURE = 1.0           # of the target softmax(A / T), A in units of the batch's standard deviation
LOG_ODDS_BOUND = 50.0       # a class the classifier rules out entirely gives a finite score


def label_log_odds(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(labels) - log p(every other class) from logits [..., C] and multi-hot targets that
    broadcast to them. Unlike the probability it keeps growing as evidence adds up, so a patch
    that makes a sure classifier surer still scores higher than one that does not."""
    is_label = (targets > 0).expand_as(logits)
    low = torch.finfo(logits.dtype).min
    inside = logits.masked_fill(~is_label, low).logsumexp(-1)
    outside = logits.masked_fill(is_label, low).logsumexp(-1)
    return (inside - outside).clamp(-LOG_ODDS_BOUND, LOG_ODDS_BOUND)


def candidate_advantages(scores: torch.Tensor) -> torch.Tensor:
    """scores [B, T, A] -> each candidate's score minus the mean over the step's candidates, divided
    by the standard deviation of those differences over the whole batch."""
    centred = scores - scores.mean(-1, keepdim=True)
    return centred / (centred.std() + 1e-8)


def policy_loss(logits: torch.Tensor, advantages: torch.Tensor, objective: str) -> torch.Tensor:
    """The patch policy's stage-II loss from its logits [B, T, A] and every candidate's advantage,
    averaged over steps (OBJECTIVES, in the module docstring)."""
    log_pi = logits.log_softmax(-1)
    if objective == "expected":
        target = (advantages / TEMPERATURE).softmax(-1)
        return -(target * log_pi).sum(-1).mean()
    if objective == "expected-ascent":
        pi = log_pi.exp()
        entropy = -(pi * log_pi).sum(-1)
        return -(pi * advantages).sum(-1).mean() - ENTROPY_BONUS * entropy.mean()
    raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
