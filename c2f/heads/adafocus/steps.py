"""AdaFocus's inference frame after frame (a mixin of AdaFocusHead), for sample-wise early exit: each
step runs the glance's policies, the local CNN's patch where the frame is kept, the classifier's
step and its prediction, so a video can stop after any step with nothing later read."""
from __future__ import annotations

import torch

from ...blocks.exits import running_steps
from ...blocks.head import HeadOutput
from ...data import Batch


class SteppedInference:
    @torch.no_grad()
    def _exiting(self, batch: Batch, positions: torch.Tensor) -> HeadOutput:
        """Frame after frame: the glance, the policies' step, the chosen patch where kept, the classifier's
        step and its prediction; a video stops once that prediction is confident (nothing later is read)."""
        B, device = len(batch), batch.mask.device
        cells = {"patch": None if self.patch_policy is None else self.patch_policy.cell,
                 "keep": None if self.keep_policy is None else self.keep_policy.cell, "classifier": self.classifier_cell}
        states = {name: cell.initial_state(B, device) for name, cell in cells.items() if cell is not None}
        logits = torch.zeros(B, self.dims.num_classes, device=device)
        steps = torch.zeros(B, device=device)
        active = torch.ones(B, dtype=torch.bool, device=device)
        for rows, frames in running_steps(active, positions):
            glance = batch.read("coarse", rows, frames)
            patches, keep = self._step_decisions(glance, states, rows)
            focus = torch.zeros(len(rows), self.dims.fine_dim, device=device)
            if keep.any():
                focus[keep] = batch.read("fine", rows[keep], frames[keep.cpu()], patches[keep])
            projected = self.classifier_cell.project(self._inputs(glance, focus))
            states["classifier"][rows] = self.classifier_cell.step(projected, states["classifier"][rows])
            logits[rows] = self.classifier(self.classifier_cell.hidden(states["classifier"][rows]))
            steps[rows] += 1
            spent = self._cost(steps[rows], steps[rows], classified=steps[rows])
            active[rows[self.stops(batch, rows, logits[rows], spent)]] = False
        return HeadOutput(logits, self._cost(steps, steps, classified=steps))

    def _step_decisions(self, glance: torch.Tensor, states: dict, rows: torch.Tensor):
        """The patch (arg-max of the policy, or the fixed policy's) and the keep decision of one step."""
        if self.patch_policy is not None:
            patch_logits, states["patch"][rows] = self.patch_policy.step(glance, states["patch"][rows])
            patches = patch_logits.argmax(-1)
        else:
            patches = self._fixed_patches((len(rows), 1), self.policy_kind, glance.device)[:, 0]
        keep = torch.ones(len(rows), dtype=torch.bool, device=glance.device)
        if self.keep_policy is not None:
            keep_logit, states["keep"][rows] = self.keep_policy.step(glance, states["keep"][rows])
            keep = torch.sigmoid(keep_logit[:, 0]) > self.keep_threshold
        return patches, keep
