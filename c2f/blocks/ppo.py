"""PPO (Schulman et al. 2017) as AdaFocus trains its policies (the authors' code: clip 0.2, discount 0.7,
entropy bonus 0.01, value loss 0.5): discounted returns of a rollout, advantages against the
critic, and the clipped surrogate loss of each update on that rollout."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Bernoulli, Categorical

CLIP, DISCOUNT, ENTROPY_BONUS, VALUE_WEIGHT = 0.2, 0.7, 0.01, 0.5


def discounted(rewards: torch.Tensor) -> torch.Tensor:
    """Returns [B, T] of per-step rewards [B, T] with DISCOUNT."""
    returns, running = torch.zeros_like(rewards), torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + DISCOUNT * running
        returns[:, t] = running
    return returns


def evaluate(policy, inputs: torch.Tensor, actions: torch.Tensor, bernoulli: bool):
    """The policy's distribution over the rollout's steps, the actions' log-probs, the critic's values.
    `policy(inputs)` gives (logits [B, T, A], values [B, T]); bernoulli: one logit, a yes/no action."""
    logits, values = policy(inputs)
    dist = Bernoulli(logits=logits[..., 0]) if bernoulli else Categorical(logits=logits)
    return dist, dist.log_prob(actions.float() if bernoulli else actions), values


@dataclass
class Rollout:
    """One policy's sampled actions and what PPO needs of them, fixed before the updates."""
    policy: torch.nn.Module
    inputs: torch.Tensor
    actions: torch.Tensor
    bernoulli: bool
    old_log_prob: torch.Tensor
    returns: torch.Tensor
    advantages: torch.Tensor

    @classmethod
    @torch.no_grad()
    def of(cls, policy, inputs, actions, rewards, bernoulli: bool) -> "Rollout":
        returns = discounted(rewards)
        _, old_log_prob, values = evaluate(policy, inputs, actions, bernoulli)
        advantages = returns - values
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return cls(policy, inputs, actions, bernoulli, old_log_prob, returns, advantages)

    def loss(self) -> torch.Tensor:
        """The clipped surrogate, the value loss and the entropy bonus, with the current parameters."""
        dist, log_prob, values = evaluate(self.policy, self.inputs, self.actions, self.bernoulli)
        ratio = (log_prob - self.old_log_prob).exp()
        surrogate = torch.minimum(ratio * self.advantages, ratio.clamp(1 - CLIP, 1 + CLIP) * self.advantages)
        return (-surrogate.mean() + VALUE_WEIGHT * ((self.returns - values) ** 2).mean()
                - ENTROPY_BONUS * dist.entropy().mean())
