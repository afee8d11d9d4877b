"""AdaFocus's stage II, what each action earns: rollouts of the frozen classifier along sampled patches
(Eq. 7 or a Table 5 variant per patch, Eq. 10 per keep decision; PPO learns from these), and along
every candidate at each step (the `expected` objectives learn from all of them). A mixin of
AdaFocusHead, which owns the networks these step."""
from __future__ import annotations

import torch
from torch.distributions import Categorical

from ...data import Batch
from . import expected


class StageTwoRollouts:
    """Rollouts of AdaFocusHead (its classifier, policies, settings)."""

    def _confidence(self, state: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Probability the classifier gives the video's labels from a hidden state: [B]."""
        return (self.classifier(self.classifier_cell.hidden(state)).softmax(-1) * (targets > 0)).sum(-1)

    def _classifier_step(self, pooled: torch.Tensor, focus: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One classifier step from the pooled glance [B, C] and a focus feature [B, D]."""
        return self.classifier_cell(torch.cat([pooled, focus], -1) if self.reuse else focus, state)

    def _keep_step(self, pooled: torch.Tensor, state: torch.Tensor, with_patch: torch.Tensor, confidence: torch.Tensor,
                   keep: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AdaFocus+ at one step: Eq. 10's reward for the sampled keep decisions [B] (the gain in
        confidence from the patch minus its cost where kept, 0 where skipped) and the next state."""
        without = self._classifier_step(pooled, torch.zeros(len(state), self.dims.fine_dim, device=state.device), state)
        gain = confidence - self._confidence(without, targets)
        reward = torch.where(keep, gain - self.eta * self.dims.patch_area_fraction, torch.zeros_like(gain))
        return reward, torch.where(keep[:, None], with_patch, without)

    @torch.no_grad()
    def _rollout(self, batch: Batch, positions: torch.Tensor, glance: torch.Tensor):
        """Sample actions, run the frozen classifier along them, and compute each step's rewards
        (Eq. 7 or a Table 5 variant for patches; Eq. 10 for keeping)."""
        B, T = positions.shape
        patch_logits = self.patch_policy(glance)[0] if self.patch_policy is not None else None
        patches = (Categorical(logits=patch_logits).sample() if patch_logits is not None
                   else self._fixed_patches((B, T), self.policy_kind, glance.device))
        keep = self.choose_keep(glance, sample=True)
        pooled = glance.mean((-2, -1))
        state = self.classifier_cell.initial_state(B, glance.device)
        previous = self._confidence(state, batch.targets)
        rows = torch.arange(B, device=glance.device)
        patch_rewards, keep_rewards = torch.zeros(B, T, device=glance.device), torch.zeros(B, T, device=glance.device)
        for t in range(T):
            chosen = batch.read("fine", rows, positions[:, t], patches[:, t])
            with_patch = self._classifier_step(pooled[:, t], chosen, state)
            confidence = self._confidence(with_patch, batch.targets)
            if self.reward_kind == "adafocus":          # minus the same with a random patch
                random_patch = torch.randint(self.candidates, (B,), device=glance.device)
                baseline = self._classifier_step(pooled[:, t], batch.read("fine", rows, positions[:, t], random_patch),
                                                 state)
                patch_rewards[:, t] = confidence - self._confidence(baseline, batch.targets)
            elif self.reward_kind == "confidence":
                patch_rewards[:, t] = confidence
            else:
                patch_rewards[:, t] = confidence - previous
            if self.keep_policy is not None:
                keep_rewards[:, t], state = self._keep_step(pooled[:, t], state, with_patch, confidence, keep[:, t],
                                                            batch.targets)
            else:
                state = with_patch
            previous = self._confidence(state, batch.targets)
        return patches, keep, patch_rewards, keep_rewards

    def _step_every_candidate(self, pooled: torch.Tensor, grid: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The classifier's next state with each candidate patch: pooled glance [B, C], grid [B, A, D],
        state [B, S] -> [B, A, S]; the state's part of the step is computed once for all candidates."""
        x = torch.cat([pooled[:, None, :].expand(-1, grid.shape[1], -1), grid], -1) if self.reuse else grid
        return self.classifier_cell.step(self.classifier_cell.project(x), state[:, None, :])

    @torch.no_grad()
    def _candidate_rollout(self, batch: Batch, positions: torch.Tensor, glance: torch.Tensor):
        """Stage II on a cache (expected.py): every candidate's feature is there, so each step scores
        every action. The history follows patches sampled from the policy (and keep decisions sampled
        from AdaFocus+'s keep policy); at each step the frozen classifier takes one step with each
        candidate. Training reads the whole grid at the sampled frames; evaluation reads one patch.
        Returns the sampled patches and keeps, every candidate's score [B, T, A] (the log-odds of the
        labels) and Eq. 10's keep rewards for the sampled patch [B, T]."""
        B, T = positions.shape
        patches = Categorical(logits=self.patch_policy(glance)[0]).sample()
        keep = self.choose_keep(glance, sample=True)
        pooled = glance.mean((-2, -1))
        state = self.classifier_cell.initial_state(B, glance.device)
        rows = torch.arange(B, device=glance.device)
        scores = torch.zeros(B, T, self.candidates, device=glance.device)
        keep_rewards = torch.zeros(B, T, device=glance.device)
        for t in range(T):
            after = self._step_every_candidate(pooled[:, t], batch.read("fine", rows, positions[:, t]), state)
            logits = self.classifier(self.classifier_cell.hidden(after))
            scores[:, t] = expected.label_log_odds(logits, batch.targets[:, None, :])
            with_patch = after[rows, patches[:, t]]
            if self.keep_policy is not None:
                confidence = (logits[rows, patches[:, t]].softmax(-1) * (batch.targets > 0)).sum(-1)
                keep_rewards[:, t], state = self._keep_step(pooled[:, t], state, with_patch, confidence, keep[:, t],
                                                            batch.targets)
            else:
                state = with_patch
        return patches, keep, scores, keep_rewards
